"""polyinr: Polynomial Implicit Neural Representations (Singh, Shukla & Turaga, CVPR 2023) in PyTorch.

Layers, each importing only the ones before it:
    core/        configs, the generator, coordinate grids, rendering, checkpoints (ours and the release's), images, files
    training/    data, augmentation, losses, backbones, discriminators, steps, the loop, distribution
    evaluation/  FID family and feature extractors, the letters feature space, protocols, image quality
    studies/     the paper's qualitative experiments, inversion, single-image INR baselines, theory, explorer
    tools/       benchmarks and the papermill notebook runner
The modules at the top (train, data, metrics, bench, explorer, experiments, checkpoint) are `python -m` entry points.
"""
from .core import runtime as _runtime

_runtime.tune_malloc()

from .core.checkpoint import load_generator, save_checkpoint  # noqa: E402
from .core.config import PRESETS, PURE, ModelConfig, get_preset  # noqa: E402
from .core.files import __version__  # noqa: E402
from .core.grid import coordinate_grid, pixel_grid  # noqa: E402
from .core.model import Generator, build_generator, count_parameters  # noqa: E402
from .core.official import load_official  # noqa: E402
from .core.render import render, render_coords, synthesize  # noqa: E402
from .training.discriminator import load_discriminator  # noqa: E402

__all__ = ["PRESETS", "PURE", "ModelConfig", "get_preset", "Generator", "build_generator", "count_parameters",
           "coordinate_grid", "pixel_grid", "render", "render_coords", "synthesize", "load_generator",
           "load_official", "load_discriminator", "save_checkpoint", "__version__"]
