"""Run an experiment notebook into a fresh folder: python experiments/run.py NAME [-p KEY VALUE] [--smoke]."""
import sys

from polyinr.tools.cli import run_cli
from polyinr.tools.experiments import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
