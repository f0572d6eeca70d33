"""`python -m polyinr.bench`: benchmarks that print one JSON line each (see `polyinr.tools.bench`)."""
import sys

from .tools.bench import main
from .tools.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
