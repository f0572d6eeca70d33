"""Poly-INR beside the generators it is compared with, and its capacity ablation, at CPU scale (notebook
`11_baselines`; the paper's Tables 1-2 and its levels ablation).

`variant` turns a training config into one of the three generator families at Poly-INR's parameter count
(`polyinr.core.model.matched_config`), so the families share everything else: data, discriminator, loss,
augmentation, EMA, mapping network, conditioning and the number of images. `fit_all` trains and scores a set
of such configs, several at a time in worker processes of one thread each (on a 2-core machine two 1-thread
fits take the time of one), each fit resumable and skipped when already done. `fit_and_score` is one fit: the
training run, then the letters protocol of `03_fid` (letters-FD, precision, recall, class consistency at the
training resolution and the 4x render: the INRs on the 4x denser grid, the conv generator bicubic-upsampled),
cached in the run folder as scores.json.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from ..core.checkpoint import load_generator
from ..core.config import TrainConfig
from ..core.files import write_json
from ..core.model import count_parameters, matched_config
from ..core.progress import progress_bar
from ..evaluation.protocols import evaluate_letters
from ..training.data import load_dataset
from ..training.loop import model_config_for, read_stats, train

ARCH_NAMES = {"polyinr": "Poly-INR", "conv": "conv (StyleGAN2-like)", "cips": "CIPS-like"}

# The recall diagnosis (notebook 11): the letters training preset with one change each (TrainConfig fields;
# g_overrides are merged into the preset's). The first entry is the preset itself, the second the recipe of the
# release that the letters preset started from, then the candidates for more recall, then the single changes
# that made the release's recipe into the preset.
RECALL_ABLATIONS = {
    "default recipe": {},
    "the release's recipe (hinge, spectral-norm D, colour + translation + cutout; no R1, mbstd, mode seeking)":
        {"loss": "hinge", "d_spectral_norm": True, "r1_gamma": 0.0, "d_mbstd": 0, "ms_weight": 0.0,
         "diffaugment": "color,translation,cutout"},
    "R1 gamma 1.0 instead of 0.2": {"r1_gamma": 1.0},
    "mode-seeking term 0.1 (Mao et al. 2019)": {"ms_weight": 0.1},
    "conv D at twice the channels (64, capped at 256)": {"d_width": 64, "d_max_width": 256},
    "spectral-norm D, hinge loss, no R1": {"loss": "hinge", "d_spectral_norm": True, "r1_gamma": 0.0},
    "no minibatch-std layer in D": {"d_mbstd": 0},
    "mapping network at 1x learning rate (the release: 0.1x)": {"g_overrides": {"mapping_lr_mult": 1.0}},
    "DiffAugment colour + translation + cutout": {"diffaugment": "color,translation,cutout"},
}


def variant(cfg: TrainConfig, arch: str = "polyinr", **g_overrides) -> TrainConfig:
    """`cfg` with generator family `arch`: Poly-INR with `g_overrides` applied, or a baseline sized to
    the parameter count of that Poly-INR (its width chosen by `matched_config`)."""
    cfg = dataclasses.replace(cfg, g_overrides={**cfg.g_overrides, **g_overrides})
    if arch == "polyinr":
        return cfg
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, split="train")
    m = matched_config(model_config_for(cfg, dataset), arch)
    return dataclasses.replace(cfg, g_overrides={**cfg.g_overrides, "arch": arch, "width": m.width,
                                                 "levels": m.levels})


def _train_seconds(stats: list[dict]) -> float:
    """Seconds of training proper: each tick's images over its img/s (sample grids, checkpoints and
    in-training evaluation excluded)."""
    kimg = [0.0] + [s["kimg"] for s in stats]
    return sum((k1 - k0) * 1000 / s["img_per_s"] for k0, k1, s in zip(kimg, kimg[1:], stats))


def fit_and_score(cfg: dict, run_dir, num: int = 10000, hires_num: int = 1000, ks=(4,), threads: int | None = None,
                  classifier_epochs: int = 4, classifiers: dict | None = None) -> dict:
    """Train `cfg` (a TrainConfig dict) into run_dir (continued if a checkpoint is there, skipped if the
    generator is), then score its generator; returns (and caches in run_dir/scores.json) one row:
    params, fd_letters, precision_letters, recall_letters, class_consistency, fd_letters_x{k},
    img_per_s, train_seconds, kimg. `classifiers` ({resolution: letters CNN}) replaces the cached letters
    classifiers (tests use random ones)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg)
    run_dir = Path(run_dir)
    _check_same_fit(run_dir, cfg)
    if not (run_dir / "generator.pt").is_file():
        train(cfg, run_dir, resume=run_dir if (run_dir / "latest.pt").is_file() else None, progress=False)
    key = {"num": num, "hires_num": hires_num, "ks": list(ks), "classifier_epochs": classifier_epochs}
    cached = run_dir / "scores.json"
    kept = json.loads(cached.read_text()) if cached.is_file() else {}
    if kept.get("protocol") == key:
        return kept["row"]
    G = load_generator(run_dir / "generator.pt")
    r = evaluate_letters(G, num=num, ks=tuple(ks), hires_num=hires_num, floors=False, progress=False,
                         classifier_epochs=classifier_epochs, classifiers=classifiers)["metrics"]
    stats = read_stats(run_dir)
    seconds = _train_seconds(stats)
    row = {"arch": G.cfg.arch, "levels": G.cfg.levels, "width": G.cfg.width, "params": count_parameters(G),
           "seed": cfg.seed, "kimg": stats[-1]["kimg"], "fd_letters": r["fd_letters"],
           "precision_letters": r["precision_letters"], "recall_letters": r["recall_letters"],
           "class_consistency": r.get("class_consistency_letters"), "img_per_s": stats[-1]["kimg"] * 1000 / seconds,
           "train_seconds": seconds}
    for k in ks:
        row[f"fd_letters_x{k}"] = r[f"fd_letters_grid_x{k}"]
        row[f"fd_letters_bicubic_x{k}"] = r[f"fd_letters_bicubic_x{k}"]
    write_json(cached, {"protocol": key, "row": row})
    return row


def _check_same_fit(run_dir: Path, cfg: TrainConfig) -> None:
    """A kept fit (a cache of fits reused across runs of the notebook) must have been trained with `cfg`;
    otherwise a ValueError names the folder instead of mixing recipes."""
    path = run_dir / "config.json"
    if not path.is_file():
        return
    kept = json.loads(path.read_text()).get("train")
    if kept is not None and TrainConfig.from_dict(kept) != cfg:
        diff = sorted(k for k, v in cfg.to_dict().items() if kept.get(k) != v)
        raise ValueError(f"fits: {str(run_dir)!r} holds a fit of another training config (fields {diff}); "
                         f"remove it or point the notebook's fits_cache at another folder")


def fit_all(jobs: dict, workers: int = 2, desc: str = "fits", **score_kw) -> dict:
    """{name: (TrainConfig, run_dir)} -> {name: row of `fit_and_score`}, `workers` fits at a time, each in
    its own process with cpu_count // workers threads (workers=1: in this process)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    rows = {}
    with progress_bar(total=len(jobs), desc=desc, unit="fit") as bar:
        if workers == 1:
            for name, (cfg, run_dir) in jobs.items():
                rows[name] = fit_and_score(cfg.to_dict(), run_dir, **score_kw)
                bar.update(1)
            return rows
        ctx = multiprocessing.get_context("spawn")       # a clean interpreter per worker: no forked torch state
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(fit_and_score, cfg.to_dict(), str(run_dir), threads=threads, **score_kw): name
                       for name, (cfg, run_dir) in jobs.items()}
            for f in as_completed(futures):
                rows[futures[f]] = f.result()
                bar.update(1)
    return {name: rows[name] for name in jobs}


def summarize(rows: list[dict], keys=("params", "fd_letters", "precision_letters", "recall_letters",
                                      "class_consistency", "img_per_s", "fd_letters_x4")) -> dict:
    """Seed mean and range of each key: {key: mean, key_min: ..., key_max: ...}."""
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            out[k] = sum(vals) / len(vals)
            out[f"{k}_min"], out[f"{k}_max"] = min(vals), max(vals)
    return out
