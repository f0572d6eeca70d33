"""`python -m polyinr.metrics`: evaluate a generator (see `polyinr.evaluation.protocols`)."""
import sys

from .evaluation.protocols import main
from .tools.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
