"""`python -m polyinr.metrics`: evaluate a generator (see `polyinr.evaluation.protocols`)."""
import sys

from .evaluation.protocols import main

if __name__ == "__main__":
    sys.exit(main())
