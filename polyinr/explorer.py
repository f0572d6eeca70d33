"""`python -m polyinr.explorer`: the explorer's benchmark (see `polyinr.studies.explorer`)."""
import sys

from .studies.explorer import main
from .tools.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
