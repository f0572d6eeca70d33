"""`python -m polyinr.explorer`: the explorer's benchmark (see `polyinr.studies.explorer`)."""
import sys

from .studies.explorer import main

if __name__ == "__main__":
    sys.exit(main())
