"""`python -m polyinr.data`: prepare or preview datasets (see `polyinr.training.data`)."""
import sys

from .tools.cli import run_cli
from .training.data import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
