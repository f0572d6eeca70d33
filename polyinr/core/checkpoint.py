"""Checkpoints: plain dicts of tensors and Python literals, written atomically and read with
`torch.load(..., weights_only=True)` (no pickled code is ever executed). The official release's `.pkl`
files are read by `polyinr.core.official` (a restricted unpickler) and can be converted to this format.

Layout: {"format": "polyinr", "format_version": 1, "polyinr_version", "preset",
"model_config": {...}, "dataset", "class_names", "G": state_dict, ...}; training checkpoints add "G_ema", "D", optimiser
states, counters and RNG states. `load_generator` prefers "G_ema" when present.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .config import ModelConfig, get_preset
from .files import __version__, atomic_save
from .model import Generator
from .official import load_official

FORMAT = "polyinr"
FORMAT_VERSION = 1


def save_checkpoint(path, G, **extra) -> Path:
    """Write G (its config, preset name and weights) plus any `extra` entries atomically."""
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "polyinr_version": __version__,
        "preset": G.preset,
        "model_config": G.cfg.to_dict(),
        "dataset": getattr(G, "dataset", None),
        "class_names": getattr(G, "class_names", None),
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
    if path.is_dir():
        inside = [p.name for p in (path / "generator.pt", path / "latest.pt") if p.is_file()]
        hint = f"; it holds {' and '.join(inside)}: pass {str(path / inside[0])!r}" if inside else ""
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder, expected a checkpoint file{hint}")
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
    With `preset`, a checkpoint made from another preset (or a different config) is an error.
    A `.pkl` file is read as an official release checkpoint (`load_official`; there the preset check
    ignores the resolution, which is the file's grid size)."""
    if Path(path).suffix == ".pkl":
        G = load_official(path, key=key or "G_ema")
        if preset is not None:
            _check_preset(path, G.preset, G.cfg, preset, get_preset(preset, resolution=G.cfg.resolution))
        return G.to(map_location)
    ckpt = load_checkpoint(path, map_location)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    if preset is not None:
        _check_preset(path, ckpt.get("preset"), cfg, preset, get_preset(preset))
    key = key or ("G_ema" if "G_ema" in ckpt else "G")
    if key not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} has no {key!r} entry; it has {sorted(ckpt)}")
    G = Generator(cfg, preset=ckpt.get("preset"), dataset=ckpt.get("dataset"), class_names=ckpt.get("class_names"))
    try:
        G.load_state_dict(ckpt[key])
    except RuntimeError as e:
        raise ValueError(f"checkpoint {str(path)!r}: weights {key!r} do not fit its model_config: {e}") from e
    return G.eval().requires_grad_(False)


def _check_preset(path, stored: str | None, cfg: ModelConfig, preset: str, expected: ModelConfig) -> None:
    if stored != preset or cfg != expected:
        diff = {k: (v, getattr(expected, k)) for k, v in cfg.to_dict().items() if getattr(expected, k) != v}
        raise ValueError(f"checkpoint {str(path)!r} holds preset {stored!r}, not {preset!r}; "
                         f"differing fields (checkpoint, requested): {diff}")


def convert_official(src, dst, key: str = "G_ema") -> Path:
    """Convert an official release `.pkl` into a polyinr checkpoint (written atomically) with the
    source's name and SHA-256 under "provenance"; `load_generator(dst)` then reads it with
    weights_only=True."""
    src, dst = Path(src), Path(dst)
    if src.suffix != ".pkl":
        raise ValueError(f"source {str(src)!r}: expected an official release checkpoint (.pkl)")
    if dst.suffix == ".pkl":
        raise ValueError(f"output {str(dst)!r}: a polyinr checkpoint is a torch file; use a .pt name")
    G = load_official(src, key=key)
    return save_checkpoint(dst, G, provenance={k: G.provenance[k] for k in ("source", "sha256", "format", "key", "note")})


# ------------------------------------------------------------------------------------ resumable state


def state_of(objects: dict) -> dict:
    """{name: state} of everything a resumable computation must restore: modules, optimisers,
    schedulers, grad scalers and samplers (`state_dict()`), torch.Generators (`get_state()`), and
    dicts of those. None entries are skipped. Save the result with `atomic_save` (or inside
    `save_checkpoint`); `restore_state` is the inverse."""
    out = {}
    for name, obj in objects.items():
        if obj is None:
            continue
        if isinstance(obj, dict):
            out[name] = state_of(obj)
        elif isinstance(obj, torch.Generator):
            out[name] = obj.get_state()
        else:
            out[name] = obj.state_dict()
    return out


def restore_state(saved: dict, objects: dict) -> None:
    """Load `saved` (from `state_of`) into the same objects, in place."""
    for name, obj in objects.items():
        if obj is None:
            continue
        if name not in saved:
            raise ValueError(f"saved state has no {name!r} entry; it has {sorted(saved)}")
        if isinstance(obj, dict):
            restore_state(saved[name], obj)
        elif isinstance(obj, torch.Generator):
            obj.set_state(saved[name])
        else:
            obj.load_state_dict(saved[name])
