"""`python -m polyinr.experiments`: run a notebook experiment (see `polyinr.tools.experiments`)."""
import sys

from .tools.cli import run_cli
from .tools.experiments import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
