"""Process-level settings that make CPU runs faster.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps it on free, so each forward pass over [B * P, n] feature maps page-faults and zeroes its
memory again. Keeping large blocks on the heap (no mmap, no trimming) removes those faults at
the cost of some peak memory held by the process. Set POLYINR_NO_MALLOPT=1 to leave glibc alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def tune_malloc() -> bool:
    """Keep freed memory in the process (glibc only). Returns True when applied."""
    global _done
    if _done or os.environ.get("POLYINR_NO_MALLOPT") == "1" or platform.system() != "Linux":
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _done = bool(ok)
    return _done
