"""polyinr: Polynomial Implicit Neural Representations (Singh, Shukla & Turaga, CVPR 2023) in PyTorch."""
from . import runtime as _runtime

_runtime.tune_malloc()

from .config import PRESETS, PURE, ModelConfig, get_preset  # noqa: E402
from .model import Generator, build_generator, count_parameters  # noqa: E402
from .render import coordinate_grid, pixel_grid, render, render_coords  # noqa: E402
from .checkpoint import load_discriminator, load_generator, save_checkpoint  # noqa: E402

__version__ = "0.1.0"
__all__ = ["PRESETS", "PURE", "ModelConfig", "get_preset", "Generator", "build_generator", "count_parameters",
           "coordinate_grid", "pixel_grid", "render", "render_coords", "load_generator", "load_discriminator",
           "save_checkpoint"]
