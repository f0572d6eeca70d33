"""Progress bars that show wherever the work runs: tqdm's widget in JupyterLab, its usual bar in a
terminal, and plain lines (one every `POLYINR_PROGRESS_SECONDS`, default 10 s) when the environment
sets POLYINR_PROGRESS=lines, which the notebook runner does so that `python experiments/run.py NAME`
streams the progress of the executed notebook to the console."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.std import tqdm as _text_tqdm


class _Lines:
    """A file for tqdm that turns each in-place refresh ('\\r' + status) into one printed line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.replace("\r", "").strip()
        if s:
            self.stream.write(s + "\n")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **kwargs):
    """tqdm(iterable, **kwargs), as plain lines under POLYINR_PROGRESS=lines (see the module doc)."""
    if os.environ.get("POLYINR_PROGRESS") == "lines":
        kwargs.setdefault("mininterval", float(os.environ.get("POLYINR_PROGRESS_SECONDS", "10")))
        kwargs.update(file=_Lines(sys.stdout), ascii=True, dynamic_ncols=False, ncols=100)
        return _text_tqdm(iterable, **kwargs)
    return _auto_tqdm(iterable, **kwargs)
