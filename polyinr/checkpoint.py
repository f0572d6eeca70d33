"""`python -m polyinr.checkpoint`: checkpoint tools.

    python -m polyinr.checkpoint convert official.pkl out.pt [--key G_ema]
        an official Poly_INR release pickle -> a polyinr checkpoint (read without executing the pickle;
        the output loads with polyinr.load_generator, weights_only=True, and renders identically)
"""
from __future__ import annotations

import argparse
import sys

from .core.checkpoint import convert_official
from .tools.cli import run_cli


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polyinr.checkpoint", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="official release .pkl -> polyinr checkpoint (.pt)")
    conv.add_argument("source", help="official checkpoint (.pkl)")
    conv.add_argument("output", help="polyinr checkpoint to write (.pt)")
    conv.add_argument("--key", default="G_ema", choices=["G_ema", "G"], help="which generator to convert")
    args = ap.parse_args(argv)
    print(convert_official(args.source, args.output, key=args.key))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
