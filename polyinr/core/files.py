"""File helpers shared by every layer: the repository root, the data cache, atomic writes, JSON
results with provenance, and file hashes."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

__version__ = "0.1.0"


def repo_root() -> Path:
    """The checkout holding this package (the folder with pyproject.toml and notebooks/)."""
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir():
        return here
    return Path.cwd()


def resolve(path) -> Path:
    """A path relative to the repository root (absolute paths are kept)."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p


def cache_dir() -> Path:
    """Where built datasets, classifiers and reference statistics are cached: $POLYINR_CACHE, else
    ~/.cache/polyinr."""
    env = os.environ.get("POLYINR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polyinr"


def atomic_write(path, write) -> Path:
    """write(file) into a temporary file in the folder of `path`, fsync, then rename it over `path`:
    a crash at any point leaves either the old file or the new one, never a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj, path) -> Path:
    """torch.save `obj` to `path` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, obj) -> Path:
    """Write `obj` as indented, key-sorted JSON atomically (numpy and torch values become lists)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str | None:
    """HEAD of the checkout, with '-dirty' when tracked files are modified; None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def provenance() -> dict:
    """Package version, git commit, torch, Python, machine, thread count and time of a result."""
    return {
        "polyinr_version": __version__, "git_commit": git_commit(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "threads": torch.get_num_threads(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
