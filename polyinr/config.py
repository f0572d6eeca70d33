"""Typed configuration and named presets.

`ModelConfig` describes one generator (mapping + synthesis, paper section 3 and the
released code). Presets are plain `ModelConfig` values; `build_generator(name, **overrides)`
applies overrides through `dataclasses.replace`, so every field can be changed by name and is
validated in one place.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    # Mapping network (z -> w).
    z_dim: int = 64                  # latent z dimension
    w_dim: int = 512                 # intermediate latent w dimension
    num_classes: int = 0             # 0 = unconditional
    embed_dim: int = 320             # class-embedding width (conditional models only)
    mapping_layers: int = 2          # FC layers after [z; embed]
    mapping_lr_mult: float = 0.1     # equalised-LR learning-rate multiplier of those layers
    w_avg_beta: float = 0.998        # decay of the running mean of w (per class when conditional)
    # Synthesis network (w, coordinates -> rgb).
    width: int = 1024                # n: channels of every level
    levels: int = 10                 # L: number of levels (= number of per-level w copies)
    img_channels: int = 3
    resolution: int = 32             # training resolution (documentation / default render size)
    # Released structure vs. the paper's pure form (section 2 of the method notes).
    warp: bool = True                # cumulative per-level 2x2 warp + translation of the grid
    coord_act: bool = True           # LeakyReLU on the affine coordinate term A_i X (levels >= 1)
    style_fc: bool = True            # FC(w -> n, lrelu) before the heads of levels >= 1
    clamp: float | None = 256.0      # clamp of every level's output; None = off
    slope: float = 0.2               # LeakyReLU slope of the synthesis; 1.0 = identity
    # Initialisation of the affine coordinate heads (see model.Synthesis.reset_parameters).
    coord_init: float = 1.0          # std of the a, b biases: spatial variation at initialisation

    def __post_init__(self):
        ints = ["z_dim", "w_dim", "embed_dim", "mapping_layers", "width", "levels", "img_channels", "resolution"]
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {v!r}")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 0:
            raise ValueError(f"ModelConfig.num_classes must be an integer >= 0, got {self.num_classes!r}")
        for name in ["mapping_lr_mult", "slope", "coord_init"]:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"ModelConfig.{name} must be a finite number, got {v!r}")
        if self.mapping_lr_mult <= 0:
            raise ValueError(f"ModelConfig.mapping_lr_mult must be > 0, got {self.mapping_lr_mult!r}")
        if not 0.0 <= self.w_avg_beta <= 1.0:
            raise ValueError(f"ModelConfig.w_avg_beta must be in [0, 1], got {self.w_avg_beta!r}")
        if self.clamp is not None and not (isinstance(self.clamp, (int, float)) and self.clamp > 0):
            raise ValueError(f"ModelConfig.clamp must be a positive number or None, got {self.clamp!r}")
        for name in ["warp", "coord_act", "style_fc"]:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)


# The paper's equation (section 3): no warp, no activation on A_i X, heads straight from w_i,
# no clamp. Use as `build_generator("letters", **PURE)`.
PURE = dict(warp=False, coord_act=False, style_fc=False, clamp=None)

PRESETS: dict[str, ModelConfig] = {
    # Released ImageNet model: 45,869,695 trainable parameters.
    "imagenet": ModelConfig(z_dim=64, w_dim=512, num_classes=1000, embed_dim=320, width=1024, levels=10,
                            resolution=256),
    # Released FFHQ model (unconditional, width 512): 13,198,399 trainable parameters.
    "ffhq": ModelConfig(z_dim=64, w_dim=512, num_classes=0, width=512, levels=10, resolution=256),
    # Small CPU model for the embedded 26-class letters data.
    "letters": ModelConfig(z_dim=32, w_dim=128, num_classes=26, embed_dim=32, width=128, levels=10,
                           resolution=32),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for preset {name!r}; known fields: {sorted(known)}")
    return dataclasses.replace(PRESETS[name], **overrides)
