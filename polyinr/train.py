"""`python -m polyinr.train`: train a generator (see `polyinr.training.loop`).

    python -m polyinr.train --preset letters --run-dir DIR [--kimg K] [--resolution R] [--resume DIR_OR_CKPT]
        [--overwrite]   (a DIR holding another run is an error unless resumed or moved aside with --overwrite)
    torchrun --nproc-per-node N -m polyinr.train --preset imagenet --config STAGE.yaml --run-dir DIR
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .core.config import get_train_preset
from .evaluation.protocols import tick_evaluator
from .tools.cli import run_cli
from .training.loop import train


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polyinr.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="letters", help="training preset (TRAIN_PRESETS)")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--resume", default=None, help="run folder or checkpoint to continue (or start the next stage from)")
    ap.add_argument("--config", default=None, help="YAML/JSON file of TrainConfig fields (applied before --set)")
    ap.add_argument("--set", nargs=2, action="append", default=[], metavar=("FIELD", "VALUE"),
                    help="override any TrainConfig field (value parsed as YAML)")
    for name, typ in [("kimg", float), ("resolution", int), ("batch", int), ("dataset", str), ("seed", int),
                      ("discriminator", str), ("precision", str), ("backbone_weights", str)]:
        ap.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None)
    ap.add_argument("--overwrite", action="store_true",
                    help="if --run-dir holds another run, move it aside to RUN_DIR.replaced-TIME first")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    overrides = {}
    if args.config:
        text = Path(args.config).read_text()   # JSON, or YAML (note: YAML reads 1e-8 as a string; write 1.0e-8)
        overrides.update((json.loads(text) if args.config.endswith(".json") else yaml.safe_load(text)) or {})
    overrides.update({k: yaml.safe_load(v) for k, v in args.set})
    for name in ["kimg", "resolution", "batch", "dataset", "seed", "discriminator", "precision", "backbone_weights"]:
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cfg = get_train_preset(args.preset, **overrides)
    train(cfg, args.run_dir, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite,
          evaluator=tick_evaluator(cfg))
    print(args.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
