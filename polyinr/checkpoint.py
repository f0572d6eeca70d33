"""Checkpoints: plain dicts of tensors and Python literals, written atomically and read with
`torch.load(..., weights_only=True)` (no pickled code is ever executed).

Layout: {"format": "polyinr", "format_version": 1, "polyinr_version", "preset",
"model_config": {...}, "G": state_dict, ...}; training checkpoints add "G_ema", "D", optimiser
states, counters and RNG states. `load_generator` prefers "G_ema" when present.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .config import ModelConfig, get_preset

FORMAT = "polyinr"
FORMAT_VERSION = 1


def atomic_save(obj, path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`: a crash
    at any point leaves either the old file or the new one, never a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(path, G, **extra) -> Path:
    """Write G (its config, preset name and weights) plus any `extra` entries atomically."""
    from . import __version__
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "polyinr_version": __version__,
        "preset": G.preset,
        "model_config": G.cfg.to_dict(),
        "G": G.state_dict(),
    }
    clash = sorted(set(extra) & set(ckpt))
    if clash:
        raise ValueError(f"save_checkpoint: extra entries {clash} would overwrite reserved keys")
    ckpt.update(extra)
    return atomic_save(ckpt, path)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a polyinr checkpoint dict (weights_only=True) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, pickle with code, not a torch file
        raise ValueError(f"checkpoint {str(path)!r} could not be read as a polyinr checkpoint "
                         f"(torch.load weights_only=True failed: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} is not a polyinr checkpoint (missing format={FORMAT!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has format_version {ckpt['format_version']}; this polyinr "
                         f"reads up to {FORMAT_VERSION}: upgrade polyinr")
    return ckpt


def load_generator(path, preset: str | None = None, key: str | None = None, map_location="cpu"):
    """Build the generator stored in `path`. `key` picks "G_ema" (default when present) or "G".
    With `preset`, a checkpoint made from another preset (or a different config) is an error."""
    from .model import Generator
    ckpt = load_checkpoint(path, map_location)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    if preset is not None:
        expected = get_preset(preset)
        if ckpt.get("preset") != preset or cfg != expected:
            diff = {k: (v, getattr(expected, k)) for k, v in cfg.to_dict().items() if getattr(expected, k) != v}
            raise ValueError(f"checkpoint {str(path)!r} holds preset {ckpt.get('preset')!r}, not {preset!r}; "
                             f"differing fields (checkpoint, requested): {diff}")
    key = key or ("G_ema" if "G_ema" in ckpt else "G")
    if key not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} has no {key!r} entry; it has {sorted(ckpt)}")
    G = Generator(cfg, preset=ckpt.get("preset"))
    try:
        G.load_state_dict(ckpt[key])
    except RuntimeError as e:
        raise ValueError(f"checkpoint {str(path)!r}: weights {key!r} do not fit its model_config: {e}") from e
    return G.eval().requires_grad_(False)


def load_discriminator(path, map_location="cpu"):
    """The trained discriminator of a training checkpoint (a run's `latest.pt`), rebuilt from the
    checkpoint's training and model configs. Its weights, frozen feature networks included, come from
    the checkpoint, so no pretrained download is needed. Returned in eval mode without gradients:
    `D(x, c)` gives logits [B, K] for images x [B, C, R, R] in [-1, 1] at the training resolution R
    (class ids c for a conditional model); higher means "judged real"."""
    import dataclasses

    from .config import TrainConfig
    from .train import build_D
    ckpt = load_checkpoint(path, map_location)
    if "D" not in ckpt or "train_config" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} holds no discriminator: only training checkpoints (a run's "
                         f"latest.pt) do; it has {sorted(ckpt)}")
    tc = dataclasses.replace(TrainConfig.from_dict(ckpt["train_config"]), pretrained=False, backbone_weights=None)
    mc = ModelConfig.from_dict(ckpt["model_config"])
    D = build_D(tc, mc.img_channels, mc.num_classes)
    try:
        D.load_state_dict(ckpt["D"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint {str(path)!r}: its D weights do not fit its train_config: {e}") from e
    return D.to(map_location).eval().requires_grad_(False)
