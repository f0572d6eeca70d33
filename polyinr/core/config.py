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

# Generator families (`polyinr.core.model.SYNTHESES`): Poly-INR and the two baselines.
ARCHS = ("polyinr", "conv", "cips")

# GAN losses (`polyinr.training.losses`).
LOSSES = ("hinge", "ns")

# DiffAugment's operations, in the order they are applied (`polyinr.training.augment`).
POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' or 'none' -> ()."""
    if policy is None or policy.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"diffaugment: unknown policy {bad}; expected a comma-separated subset of {POLICIES}")
    return parts


def conv_levels(resolution: int) -> int:
    """Style inputs of the conv baseline generator at `resolution`: one 4x4 conv, two per doubling."""
    return 2 * int(math.log2(resolution)) - 3


def _from_dict(cls, d: dict):
    """cls(**d) for a config dataclass; unknown fields are a ValueError naming them."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**d)


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
    arch: str = "polyinr"            # "polyinr" | "conv" (StyleGAN2-like) | "cips" (CIPS-like); see core.baselines
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
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "conv":
            r = self.resolution
            if r < 8 or r & (r - 1):
                raise ValueError(f"ModelConfig.resolution: the conv generator needs a power of two >= 8, got {r}")
            need = conv_levels(r)
            if self.levels != need:
                raise ValueError(f"ModelConfig.levels: the conv generator at resolution {r} has {need} style inputs "
                                 f"(one 4x4 conv, two per doubling); set levels={need}, got {self.levels}")
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
        return _from_dict(cls, d)


# The paper's equation (section 3): no warp, no activation on A_i X, heads straight from w_i,
# no clamp. Use as `build_generator("letters", **PURE)`.
PURE = dict(warp=False, coord_act=False, style_fc=False, clamp=None)

PRESETS: dict[str, ModelConfig] = {
    # Released ImageNet model: 45,869,695 trainable parameters.
    "imagenet": ModelConfig(z_dim=64, w_dim=512, num_classes=1000, embed_dim=320, width=1024, levels=10,
                            resolution=256),
    # Released FFHQ model (unconditional, width 512): 13,198,399 trainable parameters.
    "ffhq": ModelConfig(z_dim=64, w_dim=512, num_classes=0, width=512, levels=10, resolution=256),
    # Small CPU model for the embedded 26-class letters data (greyscale, trained at 16x16).
    "letters": ModelConfig(z_dim=32, w_dim=128, num_classes=26, embed_dim=32, width=128, levels=10,
                           img_channels=1, resolution=16),
    # Small CPU model for the Twemoji data in eight groups (`emoji-groups`; RGB, trained at 32x32).
    "emoji": ModelConfig(z_dim=64, w_dim=256, num_classes=8, embed_dim=32, width=128, levels=10, img_channels=3,
                         resolution=32),
}


def _from_table(table: dict, what: str, name: str, overrides: dict):
    """table[name] with `overrides` applied; unknown names or fields are ValueErrors naming them."""
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; expected one of {sorted(table)}")
    known = {f.name for f in dataclasses.fields(table[name])}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {what} {name!r}; known fields: {sorted(known)}")
    return dataclasses.replace(table[name], **overrides)


def get_preset(name: str, **overrides) -> ModelConfig:
    return _from_table(PRESETS, "preset", name, overrides)


@dataclass(frozen=True)
class TrainConfig:
    """One training run (paper section 3.3 and the released StyleGAN-XL recipe). Saved as
    config.json in every run folder and inside every checkpoint."""
    preset: str = "letters"          # generator preset (PRESETS); num_classes / img_channels follow the data
    g_overrides: dict = dataclasses.field(default_factory=dict)   # ModelConfig fields changed from the preset
    dataset: str = "letters"         # "letters" | "digits" | "emoji" | "emoji-groups" | a folder or .zip of images
    resolution: int = 32             # training grid (and data) resolution
    kimg: float = 40.0               # length: thousands of real images shown to D
    batch: int = 32                  # global batch
    batch_gpu: int | None = None     # per-process batch (gradient accumulation when < batch / world size)
    # Discriminator.
    discriminator: str = "conv"      # "conv" | "projected"
    d_width: int = 64                # conv D: channels of the first block
    d_max_width: int = 256           # conv D: channel cap
    d_mbstd: int = 0                 # conv D: minibatch-std group size (StyleGAN2; 0 = off; the projected D ignores it)
    d_spectral_norm: bool = True     # conv D: spectral norm of every layer (False: use r1_gamma; projected D ignores it)
    backbones: tuple = ("tf_efficientnet_lite0", "deit_base_distilled_patch16_224")  # projected D
    d_input_size: int = 224          # projected D: images are resized to this before the backbones
    pretrained: bool = True          # projected D: pretrained backbones (False = random, tests only)
    backbone_weights: str | None = None   # folder with NAME.safetensors / .pth for offline machines
    # Loss and regularisation.
    loss: str = "hinge"              # "hinge" (the release) | "ns" (non-saturating logistic, StyleGAN2)
    r1_gamma: float = 0.0            # R1 penalty gamma/2 E|grad_x D(x_real)|^2 (0 = off) ...
    r1_every: int = 4                # ... applied every N-th D step with weight N (lazy regularisation)
    ms_weight: float = 0.0           # mode-seeking term for G (Mao et al. 2019): pairs of one class, 0 = off
    # Optimisation.
    lr_g: float = 1e-4
    lr_d: float = 2e-4
    head_lr_mult: float = 1.0        # learning-rate multiplier of the per-level affine / warp heads of G
    betas: tuple = (0.0, 0.99)
    eps: float = 1e-8
    ema_kimg: float = 20.0           # half-life of the generator EMA in thousands of images
    ema_rampup: float | None = 0.05  # EMA half-life <= rampup * images seen so far (None = off)
    # Augmentation and regularisation of D's inputs.
    diffaugment: str = "color,translation,cutout"
    blur_init_sigma: float = 0.0     # Gaussian blur of D's inputs, fading to 0 ...
    blur_fade_kimg: float = 300.0    # ... over this many thousand images
    # Classifier guidance (a cross-entropy term for G from a pretrained classifier).
    cls_weight: float = 0.0
    cls_model: str = "deit_small_distilled_patch16_224"   # timm ImageNet classifier, or "letters"
    # Execution.
    precision: str = "fp32"          # "fp32" | "bf16" (autocast) | "fp16" (CUDA, with grad scaling) | "auto": bf16
    #                                  where the device computes it natively (CUDA, AVX-512 / AMX CPUs), else fp32
    compile: bool = False            # torch.compile the synthesis
    seed: int = 0
    deterministic: bool = False      # torch.use_deterministic_algorithms (bit-exact resume on CPU)
    tick_kimg: float = 4.0           # log, sample grids every tick
    eval_ticks: int = 0              # score the EMA generator every N ticks and at the end (0 = off): ...
    eval_num: int = 2000             # ... on this many fixed latents (letters data: FD, precision, recall, consistency)
    snapshot_ticks: int = 1          # checkpoint (latest.pt) every N ticks
    grid_rows: int = 4               # sample grid: rows of fixed seeds x one column per class (<= 26)
    workers: int = 0                 # image-decoding threads for folder / zip datasets

    def __post_init__(self):
        try:  # YAML / JSON give lists (and ints): normalise the tuple fields
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
            object.__setattr__(self, "backbones", tuple(str(b) for b in self.backbones))
        except (TypeError, ValueError):
            raise ValueError(f"TrainConfig.betas / backbones: expected sequences, got {self.betas!r}, "
                             f"{self.backbones!r}") from None

        def pos_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        for name in ["resolution", "batch", "d_width", "d_max_width", "d_input_size", "snapshot_ticks", "grid_rows",
                     "r1_every", "eval_num"]:
            pos_int(name)
        for name in ["eval_ticks", "d_mbstd"]:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0 (0 = off), got {v!r}")
        if self.ms_weight > 0 and (self.batch % 2 or (self.batch_gpu or 2) % 2):
            raise ValueError(f"TrainConfig.ms_weight: mode seeking pairs samples, so batch ({self.batch}) and "
                             f"batch_gpu ({self.batch_gpu}) must be even")
        if not isinstance(self.d_spectral_norm, bool):
            raise ValueError(f"TrainConfig.d_spectral_norm must be True or False, got {self.d_spectral_norm!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.batch_gpu is not None:
            pos_int("batch_gpu")
        if self.preset not in PRESETS:
            raise ValueError(f"TrainConfig.preset: unknown preset {self.preset!r}; expected one of {sorted(PRESETS)}")
        if self.discriminator not in ("conv", "projected"):
            raise ValueError(f"TrainConfig.discriminator must be 'conv' or 'projected', got {self.discriminator!r}")
        if self.precision not in ("fp32", "bf16", "fp16", "auto"):
            raise ValueError(f"TrainConfig.precision must be 'fp32', 'bf16', 'fp16' or 'auto', got {self.precision!r}")
        for name in ["kimg", "lr_g", "lr_d", "head_lr_mult", "tick_kimg", "ema_kimg", "eps"]:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive number, got {v!r}")
        for name in ["blur_init_sigma", "blur_fade_kimg", "cls_weight", "r1_gamma", "ms_weight"]:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"TrainConfig.{name} must be a number >= 0, got {v!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        if not isinstance(self.g_overrides, dict):
            raise ValueError(f"TrainConfig.g_overrides must be a dict of ModelConfig fields, got {self.g_overrides!r}")
        get_preset(self.preset, **{**self.g_overrides, "resolution": self.resolution})   # validates the overrides
        parse_policy(self.diffaugment)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["backbones"], d["betas"] = list(self.backbones), list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _from_dict(cls, d)


# Training recipes. imagenet / ffhq: the released StyleGAN-XL recipe (first stage at 32x32; later
# stages resume with a higher resolution, see experiments/configs). letters: tuned for a 5-minute CPU run.
TRAIN_PRESETS: dict[str, TrainConfig] = {
    "imagenet": TrainConfig(preset="imagenet", dataset="data/imagenet32.zip", resolution=32, kimg=10_000, batch=64,
                            discriminator="projected", lr_g=1e-4, lr_d=2e-4, blur_init_sigma=2.0,
                            blur_fade_kimg=300.0, tick_kimg=40.0, snapshot_ticks=10),
    "ffhq": TrainConfig(preset="ffhq", dataset="data/ffhq32.zip", resolution=32, kimg=10_000, batch=64,
                        discriminator="projected", lr_g=1e-4, lr_d=2e-4, blur_init_sigma=2.0, blur_fade_kimg=300.0,
                        tick_kimg=40.0, snapshot_ticks=10),
    # Chosen by measurement on 2 CPU cores (experiments/README.md, "How the letters recipe was chosen"): 16x16 with bf16
    # autocast where the CPU computes bf16 natively (precision "auto": AVX-512 / AMX; fp32 on AVX2-only CPUs); lr 1e-3 with the heads at 1e-4 (head_lr_mult 0.1); a StyleGAN2-style D (no spectral norm, R1,
    # minibatch-std, non-saturating loss) and translation-only DiffAugment lifted
    # precision / recall at 10k samples from 0.17 / 0.16 (the release's hinge recipe) to about 0.5 / 0.4. The
    # generator is the letters preset at width 64 (10 levels, 284,061 parameters): it trains about 1.7x faster than
    # width 128, and at 100 kimg its three seeds scored letters-FD 0.57-0.66, precision 0.54-0.60 and recall
    # 0.58-0.67 (width 128 at 70 kimg: 1.1-3.3, 0.38-0.58, 0.21-0.49); 90 kimg keeps the main job within six
    # minutes on 2 cores (experiments/README.md, "The main job's generator").
    "letters": TrainConfig(preset="letters", g_overrides={"width": 64}, dataset="letters", resolution=16, kimg=90.0,
                           batch=32, discriminator="conv", d_width=32, d_max_width=128, d_mbstd=4,
                           d_spectral_norm=False,
                           loss="ns", r1_gamma=0.2, diffaugment="translation", lr_g=1e-3, lr_d=1e-3,
                           head_lr_mult=0.1, precision="auto", tick_kimg=10.0, eval_ticks=2, eval_num=2000),
    # The letters recipe on the Twemoji data in eight Unicode-name groups at 32x32 (notebook 12_emoji) with half the
    # learning rates and R1 1.0: at lr 1e-3 the colour model diverged within 20 kimg (D and G losses in the hundreds
    # to 1e5, R1 in the thousands, with R1 0.2 or 2.0), at 5e-4 with R1 1.0 it stayed stable (experiments/README.md,
    # 12_emoji). No in-training quality check (the letters features do not apply; 12_emoji scores after training).
    "emoji": TrainConfig(preset="emoji", dataset="emoji-groups", resolution=32, kimg=200.0, batch=32,
                         discriminator="conv", d_width=32, d_max_width=128, d_mbstd=4, d_spectral_norm=False,
                         loss="ns", r1_gamma=1.0, diffaugment="translation", lr_g=5e-4, lr_d=5e-4,
                         head_lr_mult=0.1, precision="auto", tick_kimg=20.0),
}


def get_train_preset(name: str, **overrides) -> TrainConfig:
    return _from_table(TRAIN_PRESETS, "training preset", name, overrides)
