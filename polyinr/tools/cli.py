"""How the command lines report bad input: a mistake in the arguments, files or data prints one line
`error: ...` (the message names the argument or file and what was expected) and exits with status 2,
as argparse does for its own errors. POLYINR_TRACEBACK=1 shows the full traceback instead."""
from __future__ import annotations

import os
import sys
from typing import Callable

from ..evaluation.fid import InceptionWeightsError
from ..training.backbones import BackboneWeightsError

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, InceptionWeightsError,
               BackboneWeightsError)


def run_cli(main: Callable[[], int]) -> int:
    """main() with user errors turned into `error: message` on stderr and exit status 2."""
    try:
        return main()
    except USER_ERRORS as e:
        if os.environ.get("POLYINR_TRACEBACK") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
