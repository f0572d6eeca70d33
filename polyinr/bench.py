"""`python -m polyinr.bench`: benchmarks that print one JSON line each (see `polyinr.tools.bench`)."""
import sys

from .tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
