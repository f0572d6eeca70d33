"""Training (the StyleGAN-XL recipe of the Poly-INR release, paper section 4).

    python -m polyinr.train --preset letters --run-dir DIR [--kimg K] [--resolution R] [--resume DIR_OR_CKPT]

`train(cfg, run_dir)` is the one entry point and reads as its phases: build the run (data,
networks, optimisers, random streams), restore it from a checkpoint, prepare the run folder, then
steps (`train_step`: D step, G step, EMA; see `steps`) with a tick every `tick_kimg` (`end_tick`:
stats line, sample grids) and a checkpoint every `snapshot_ticks` ticks (`save_run`). It writes
into `run_dir`:

    config.json     resolved TrainConfig, generator config, seed, package version, git commit
    stats.jsonl     one line per tick: kimg, losses, img/s, seconds (and quality scores when evaluated)
    samples/        fixed-seed sample grids every tick, at the training resolution and at 4x
    latest.pt       checkpoint (atomic): G, G_ema, D, optimisers, counters, RNG and sampler states
    generator.pt    the EMA generator alone, for `polyinr.load_generator`

`--resume` from a run of the same resolution continues it exactly; from a run at a lower resolution
it starts the next progressive stage: the generator (and its EMA) is kept, D and the optimisers
start fresh, and the image counter restarts at 0.

A folder that already holds a run (a checkpoint, stats or tick grids) is never written over: training
into it stops with an error unless it resumes that run, or `overwrite=True` (`--overwrite`) first moves
the old folder aside to `<run_dir>.replaced-<UTC time>`. A run that fails before its first tick
removes the folder entries it created.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import load_checkpoint, restore_state, save_checkpoint, state_of
from ..core.config import ModelConfig, TrainConfig, get_preset, parse_policy
from ..core.files import provenance, write_json
from ..core.images import save_grid, to_float, upsample
from ..core.model import Generator
from ..core.progress import progress_bar
from ..core.render import render
from . import augment as aug
from .classifiers import build_classifier
from .data import load_dataset
from .discriminator import build_D
from .distributed import Dist, gather_rng_states, init_distributed, seed_everything, set_rng_state
from .steps import StepContext, autocast, d_step, g_param_groups, g_step, grad_scalers, precision_of, select, update_ema


def model_config_for(cfg: TrainConfig, dataset) -> ModelConfig:
    """The preset with the run's overrides; classes, channels and resolution follow the dataset."""
    return get_preset(cfg.preset, **{**cfg.g_overrides, "num_classes": dataset.num_classes,
                                     "img_channels": dataset.channels, "resolution": cfg.resolution})


# -------------------------------------------------------------------------------------- data stream


class Sampler:
    """Infinite stream of shuffled dataset indices (a new permutation per epoch) from its own
    generator; its state (generator, permutation, position) goes into every checkpoint."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def next(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
            take = min(k, self.n - self.pos)
            out.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            k -= take
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos = s["perm"], int(s["pos"])


def sample_latents(gen: torch.Generator, n: int, cfg: ModelConfig, labels: torch.Tensor | None, device):
    """z ~ N(0, I) and classes drawn from the dataset's label distribution (uniform over samples)."""
    z = torch.randn(n, cfg.z_dim, generator=gen).to(device)
    if not cfg.conditional:
        return z, None
    idx = torch.randint(0, len(labels), (n,), generator=gen)
    return z, labels[idx].to(device)


def grid_latents(cfg: ModelConfig, rows: int, seed: int, device):
    """Fixed sample-grid latents: row r uses seed (seed * 1000 + r) for every class column."""
    cols = min(cfg.num_classes, 26) if cfg.conditional else 8
    z = torch.stack([torch.randn(cfg.z_dim, generator=torch.Generator().manual_seed(seed * 1000 + r))
                     for r in range(rows) for _ in range(cols)]).to(device)
    c = torch.arange(cols).repeat(rows).to(device) if cfg.conditional else None
    return z, c, cols


# -------------------------------------------------------------------------------------------- state


def resolve_resume(resume) -> Path:
    p = Path(resume)
    if p.is_dir():
        p = p / "latest.pt"
    if not p.is_file():
        raise FileNotFoundError(f"resume: {str(resume)!r} is neither a checkpoint file nor a run folder with latest.pt")
    return p


def run_files(run_dir) -> list[str]:
    """What of a training run `run_dir` holds: checkpoints, stats, tick grids. A notebook's config.json,
    the reals grid or a launch request alone are not a run."""
    d = Path(run_dir)
    found = [n for n in ("latest.pt", "generator.pt", "stats.jsonl") if (d / n).exists()]
    if (d / "samples").is_dir() and any((d / "samples").glob("fakes*.png")):
        found.append("samples/fakes*.png")
    return found


def claim_run_dir(run_dir, resume=None, overwrite: bool = False, move: bool = True) -> Path | None:
    """Make sure training into `run_dir` loses nothing. A folder holding a run may only be resumed
    (`resume` inside it); otherwise it is a FileExistsError, or with `overwrite` the folder is renamed
    to `<run_dir>.replaced-<UTC time>` (when `move`; rank 0 only under torchrun). Returns that path."""
    found = run_files(run_dir)
    if not found:
        return None
    d = Path(run_dir).resolve()
    if resume is not None and resolve_resume(resume).resolve().parent == d:
        return None                                                     # continuing this very run
    if not overwrite:
        raise FileExistsError(f"run_dir: {str(run_dir)!r} already holds a training run ({', '.join(found)}); pass "
                              f"--resume {run_dir} to continue it, choose another --run-dir, or pass --overwrite "
                              f"to move the old folder aside first")
    if not move:
        return None
    aside = d.with_name(f"{d.name}.replaced-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    n = 1
    while aside.exists():
        aside, n = aside.with_name(f"{aside.name.split('~')[0]}~{n}"), n + 1
    d.rename(aside)
    return aside


@contextlib.contextmanager
def _undo_failed_start(run_dir):
    """If the block fails before the run saved anything (no checkpoint, stats or tick grid), remove
    the folder entries it created (reals grid, samples/, config.json, the folder), so that a failed
    start leaves the disk as it was."""
    d = Path(run_dir)
    made = [p for p in (d, d / "samples", d / "samples" / "reals.png", d / "config.json") if not p.exists()]
    try:
        yield
    except BaseException:
        if not run_files(d):
            for p in reversed(made):
                with contextlib.suppress(OSError):
                    p.rmdir() if p.is_dir() else p.unlink()
        raise


# --------------------------------------------------------------------------------------------- loop


@dataclass
class Run:
    """Everything a training run holds: config, place in the job, data, networks, optimisers, the
    random streams of the global batch, counters, and the fixed sample-grid latents."""
    cfg: TrainConfig
    run_dir: Path
    dist: Dist
    device: torch.device
    local: int                      # images per process per step
    micro: int                      # micro-batch (gradient accumulation)
    shard: slice                    # this rank's part of the global batch
    dataset: object
    mcfg: ModelConfig
    G: Generator
    G_ema: Generator
    D: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sampler: Sampler
    latent_gen: torch.Generator
    aug_gen: torch.Generator
    scalers: dict | None = None
    ctx: StepContext | None = None
    cur_nimg: int = 0
    step: int = 0
    tick: int = 0
    stage_from: dict | None = None
    grid: tuple | None = None       # (z, c, columns) of the sample grids
    evaluator: object = None        # G -> {metric: value}, run every cfg.eval_ticks ticks (rank 0)

    def resumable(self) -> dict:
        """The objects whose state a checkpoint keeps (besides G, which `save_checkpoint` writes)."""
        return {"G_ema": self.G_ema, "D": self.D, "opt_G": self.opt_G, "opt_D": self.opt_D, "sampler": self.sampler,
                "latent_gen": self.latent_gen, "aug_gen": self.aug_gen, "scalers": self.scalers}


def build_run(cfg: TrainConfig, run_dir, device=None) -> Run:
    """Join the job, load the data and build the networks, optimisers and random streams; identical
    on every rank and for any world size (global RNGs seeded with cfg.seed while building, then with
    the per-rank seed)."""
    dist, device = init_distributed(device)
    B = cfg.batch
    if B % dist.world:
        raise ValueError(f"batch: the global batch {B} must be divisible by the number of processes {dist.world}")
    local = B // dist.world
    micro = cfg.batch_gpu or local
    if local % micro:
        raise ValueError(f"batch_gpu: the per-process batch {local} must be a multiple of batch_gpu {micro}")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    seed_everything(cfg.seed)
    builtin = cfg.dataset in ("letters", "digits", "emoji", "emoji-groups")
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, split="train",
                           **({} if builtin else {"workers": cfg.workers}))
    mcfg = model_config_for(cfg, dataset)
    G = Generator(mcfg, preset=cfg.preset, dataset=dataset.name, class_names=dataset.class_names).to(device).train()
    D = build_D(cfg, dataset.channels, dataset.num_classes).to(device).train()
    run = Run(cfg=cfg, run_dir=Path(run_dir), dist=dist, device=device, local=local, micro=micro,
              shard=slice(dist.rank * local, (dist.rank + 1) * local), dataset=dataset, mcfg=mcfg, G=G,
              G_ema=copy.deepcopy(G).eval().requires_grad_(False), D=D,
              opt_G=torch.optim.Adam(g_param_groups(G, cfg), lr=cfg.lr_g, betas=cfg.betas, eps=cfg.eps),
              opt_D=torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=cfg.betas,
                                     eps=cfg.eps),
              sampler=Sampler(len(dataset), cfg.seed),                # the global index stream
              latent_gen=torch.Generator().manual_seed(cfg.seed + 1), aug_gen=torch.Generator().manual_seed(cfg.seed + 2))
    seed_everything(cfg.seed * dist.world + dist.rank)   # per-rank global RNGs (the batch uses the generators above)
    return run


def restore_run(run: Run, resume) -> dict:
    """Load a checkpoint into the run: the same stage continues exactly (every state and counter);
    a checkpoint of another resolution starts the next progressive stage (G and its EMA only).
    Returns the checkpoint."""
    path = resolve_resume(resume)
    ck = load_checkpoint(path)
    ck_cfg = ModelConfig.from_dict(ck["model_config"])
    ck_train = TrainConfig.from_dict(ck["train_config"]) if "train_config" in ck else None
    if dataclasses.replace(ck_cfg, resolution=run.mcfg.resolution) != run.mcfg:
        raise ValueError(f"resume: {str(path)!r} holds a generator with another configuration than this run")
    run.G.load_state_dict(ck["G"])
    run.G_ema.load_state_dict(ck.get("G_ema", ck["G"]))
    if ck_train is not None and ck_train.resolution == run.cfg.resolution and "D" in ck:
        restore_state(ck, {k: v for k, v in run.resumable().items() if k != "scalers"})
        rngs = ck.get("rng_ranks") or [ck["rng"]]
        set_rng_state(rngs[run.dist.rank] if len(rngs) == run.dist.world else rngs[0])
        run.cur_nimg, run.step, run.tick = int(ck["cur_nimg"]), int(ck["step"]), int(ck["tick"])
    else:
        run.stage_from = {"checkpoint": str(path), "resolution": ck_train.resolution if ck_train else None}
    return ck


def prepare_run(run: Run, resume=None, ck: dict | None = None) -> None:
    """Grad scalers, compilation, the step context and the run folder (config.json, reals grid);
    after a resume, drop logged ticks beyond the checkpoint."""
    cfg, dist = run.cfg, run.dist
    run.scalers = grad_scalers(cfg, run.device)
    if run.scalers and ck is not None and "scalers" in ck:
        restore_state(ck, {"scalers": run.scalers})
    if cfg.compile:
        run.G.synthesis.evaluate = torch.compile(run.G.synthesis.evaluate)
    run.ctx = StepContext(policy=parse_policy(cfg.diffaugment), aug_gen=run.aug_gen,
                          autocast=autocast(cfg, run.device), classifier=build_classifier(cfg, run.device),
                          cls_weight=cfg.cls_weight, micro=run.micro, dist=dist if dist.world > 1 else None,
                          scalers=run.scalers, loss=cfg.loss, r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every,
                          ms_weight=cfg.ms_weight)
    run.grid = grid_latents(run.mcfg, cfg.grid_rows, cfg.seed, run.device)
    if not dist.main:
        return
    (run.run_dir / "samples").mkdir(parents=True, exist_ok=True)
    ds = run.dataset
    config = {"train": cfg.to_dict(), "model": run.mcfg.to_dict(),
              "dataset": {"name": ds.name, "size": len(ds), "num_classes": ds.num_classes, "channels": ds.channels},
              "seed": cfg.seed, "world_size": dist.world,
              "rank_seeds": [cfg.seed * dist.world + r for r in range(dist.world)],
              "batch_per_process": run.local, "micro_batch": run.micro, "device": str(run.device),
              "precision": precision_of(cfg.precision, run.device),
              "resumed_from": str(resume) if resume is not None else None, "stage_from": run.stage_from,
              "provenance": provenance()}
    cfg_path = run.run_dir / "config.json"   # keep what a notebook wrote there (its parameters)
    write_json(cfg_path, {**(json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}), **config})
    _truncate_stats(run.run_dir / "stats.jsonl", run.cur_nimg)
    if not (run.run_dir / "samples" / "reals.png").exists():
        cols, labels = run.grid[2], ds.labels
        idx = torch.arange(min(len(ds), cols * cfg.grid_rows))
        if labels is not None:  # one real image per class column, like the fakes grid
            idx = torch.cat([torch.nonzero(labels == c)[r: r + 1, 0] for r in range(cfg.grid_rows) for c in range(cols)])
        save_grid(to_float(ds.get_batch(idx)[0], "cpu"), run.run_dir / "samples" / "reals.png", nrow=cols)


def train_step(run: Run) -> dict:
    """One iteration on the global batch (drawn identically on every rank; this rank keeps its
    shard): D step, G step, EMA. Returns the step's loss terms."""
    cfg, ctx, B, R, s = run.cfg, run.ctx, run.cfg.batch, run.cfg.resolution, run.shard
    ctx.blur_sigma = aug.blur_sigma(run.cur_nimg, cfg.blur_init_sigma, cfg.blur_fade_kimg)
    idx = run.sampler.next(B)
    z, c_fake = sample_latents(run.latent_gen, B, run.mcfg, run.dataset.labels, run.device)
    aug_real = aug.sample_params(ctx.policy, B, R, R, run.aug_gen, run.device)
    aug_fake = aug.sample_params(ctx.policy, B, R, R, run.aug_gen, run.device)
    real_u8, c_real = run.dataset.get_batch(idx[s])
    real = to_float(real_u8, run.device)
    c_real = c_real.to(run.device) if c_real is not None else None
    terms = d_step(run.G, run.D, run.opt_D, real, c_real, z[s], select(c_fake, s), ctx,
                   select(aug_real, s), select(aug_fake, s), r1=cfg.r1_gamma > 0 and run.step % cfg.r1_every == 0)
    z, c_fake = sample_latents(run.latent_gen, B, run.mcfg, run.dataset.labels, run.device)
    if cfg.ms_weight > 0 and c_fake is not None:     # mode seeking compares same-class pairs (0, 1), (2, 3), ...
        c_fake[1::2] = c_fake[0::2][: len(c_fake[1::2])]
    aug_g = aug.sample_params(ctx.policy, B, R, R, run.aug_gen, run.device)
    terms.update(g_step(run.G, run.D, run.opt_G, z[s], select(c_fake, s), ctx, select(aug_g, s)))
    run.cur_nimg += B
    run.step += 1
    update_ema(run.G_ema, run.G, run.cur_nimg, B, cfg.ema_kimg, cfg.ema_rampup)
    return terms


def tick_quality(run: Run, final: bool) -> dict:
    """The evaluator's scores of the EMA generator on rank 0 when due (every cfg.eval_ticks ticks and
    at the end), with `eval_seconds`; {} otherwise. The global random state is left untouched, so a
    resumed run continues exactly whether or not it was scored."""
    due = run.cfg.eval_ticks and ((run.tick + 1) % run.cfg.eval_ticks == 0 or final)
    if run.evaluator is None or not due or not run.dist.main:
        return {}
    t = time.time()
    with torch.random.fork_rng(devices=[]):
        scores = dict(run.evaluator(run.G_ema))
    return {**scores, "eval_seconds": time.time() - t}


def end_tick(run: Run, means: dict, img_per_s: float, seconds: float) -> None:
    """Rank 0: one stats.jsonl line and the tick's sample grids (training resolution and 4x)."""
    run.tick += 1
    if not run.dist.main:
        return
    line = {"tick": run.tick, "kimg": run.cur_nimg / 1000, "step": run.step, "img_per_s": img_per_s,
            "seconds": seconds, "blur_sigma": run.ctx.blur_sigma, **means}
    with open(run.run_dir / "stats.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    grid_z, grid_c, cols = run.grid
    ws = run.G_ema.mapping(grid_z, grid_c)
    R, name = run.cfg.resolution, grid_name(run.cur_nimg)
    img = render(run.G_ema, ws, R, R)
    save_grid(img, run.run_dir / "samples" / f"{name}.png", nrow=cols)
    x4 = (render(run.G_ema, ws[: 2 * cols], 4 * R, 4 * R) if run.G_ema.synthesis.any_grid   # 4x: the first two rows,
          else upsample(img[: 2 * cols], 4))                                # bicubic for a generator bound to its grid
    save_grid(x4, run.run_dir / "samples" / f"{name}_x4.png", nrow=cols)


def grid_name(nimg: int) -> str:
    """Sample-grid file stem at `nimg` images: fakes000070 at 70 kimg; fakes000000.032 at 32 images,
    so ticks shorter than a kimg never share a name. Names sort in training order."""
    k, rest = divmod(int(nimg), 1000)
    return f"fakes{k:06d}" + (f".{rest:03d}" if rest else "")


def save_run(run: Run, final: bool = False) -> None:
    """latest.pt (atomic; every rank's RNG state) and, at the end, generator.pt (the EMA generator)."""
    rngs = gather_rng_states(run.dist)
    if run.dist.main:
        save_checkpoint(run.run_dir / "latest.pt", run.G, **state_of(run.resumable()), cur_nimg=run.cur_nimg,
                        step=run.step, tick=run.tick, train_config=run.cfg.to_dict(), rng=rngs[0], rng_ranks=rngs,
                        world_size=run.dist.world)
        if final:
            save_checkpoint(run.run_dir / "generator.pt", run.G_ema, train_config=run.cfg.to_dict(),
                            cur_nimg=run.cur_nimg)
    run.dist.barrier()


def train(cfg: TrainConfig, run_dir, resume=None, progress: bool = True, device=None,
          stop_after_steps: int | None = None, overwrite: bool = False, evaluator=None) -> Path:
    """Train according to `cfg` into `run_dir`; returns run_dir. Under torchrun every process calls
    this; rank 0 writes the run folder. `stop_after_steps` ends the loop early without a final
    checkpoint (used to simulate a crash in tests).

    Data parallelism: every rank draws the same global batch (indices, latents, augmentation), uses
    its slice of batch / world_size samples (in micro-batches of batch_gpu), and gradients are
    averaged over ranks, so the result does not depend on the number of processes. The global RNGs
    of rank r are seeded with seed * world_size + r (recorded in config.json).

    A `run_dir` holding another run is an error (see `claim_run_dir`; `overwrite` moves it aside).
    `evaluator` (G -> {metric: value}, e.g. `polyinr.evaluation.protocols.tick_evaluator(cfg)`) scores
    the EMA generator every cfg.eval_ticks ticks and at the end, into the tick's stats.jsonl line."""
    claim_run_dir(run_dir, resume, overwrite, move=int(os.environ.get("RANK", "0")) == 0)
    with _undo_failed_start(run_dir):
        run = build_run(cfg, run_dir, device)
        ck = restore_run(run, resume) if resume is not None else None
        prepare_run(run, resume, ck)
        run.evaluator = evaluator
        return _loop(run, progress, stop_after_steps)


def _loop(run: Run, progress: bool, stop_after_steps: int | None) -> Path:
    """Steps, ticks and checkpoints until cfg.kimg; then the final generator.pt."""
    cfg = run.cfg
    total, tick_nimg = int(cfg.kimg * 1000), int(cfg.tick_kimg * 1000)
    next_tick = (run.cur_nimg // tick_nimg + 1) * tick_nimg
    bar = progress_bar(total=total / 1000, initial=min(run.cur_nimg, total) / 1000, unit="kimg",
                       bar_format="{desc} {n:.1f}/{total:.1f} kimg |{bar}| {elapsed}<{remaining}{postfix}",
                       disable=not (progress and run.dist.main), desc="train")
    tick_start, tick_nimg0, t0 = time.time(), run.cur_nimg, time.time()
    acc: dict[str, list[float]] = {}
    steps_done = 0
    try:
        while run.cur_nimg < total:
            terms = train_step(run)
            steps_done += 1
            for k, v in terms.items():
                acc.setdefault(k, []).append(v)
            bar.update(min(run.cur_nimg, total) / 1000 - bar.n)   # the last step may pass the total
            if run.step % 10 == 0:
                ips = (run.cur_nimg - tick_nimg0) / max(time.time() - tick_start, 1e-9)
                bar.set_postfix_str(f"d {terms['d_loss']:.3f} g {terms['g_loss']:.3f} {ips:.0f} img/s",
                                    refresh=False)   # printed at the bar's own interval
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                return run.run_dir
            if run.cur_nimg >= next_tick or run.cur_nimg >= total:
                now = time.time()
                means = run.dist.mean({k: float(np.mean(v)) for k, v in acc.items()})
                means.update(tick_quality(run, final=run.cur_nimg >= total))
                end_tick(run, means, (run.cur_nimg - tick_nimg0) / max(now - tick_start, 1e-9), now - t0)
                if run.tick % cfg.snapshot_ticks == 0 or run.cur_nimg >= total:
                    save_run(run, final=run.cur_nimg >= total)
                acc, tick_start, tick_nimg0 = {}, time.time(), run.cur_nimg
                next_tick += tick_nimg
    finally:
        bar.close()
    if run.dist.main and not (run.run_dir / "generator.pt").exists():
        save_checkpoint(run.run_dir / "generator.pt", run.G_ema, train_config=cfg.to_dict(), cur_nimg=run.cur_nimg)
    run.dist.barrier()
    return run.run_dir


def _truncate_stats(path: Path, cur_nimg: int) -> None:
    """After a resume, drop logged ticks beyond the checkpoint (they will be logged again)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = [ln for ln in lines if json.loads(ln)["kimg"] * 1000 <= cur_nimg + 1e-6]
    if len(keep) != len(lines):
        path.write_text("".join(ln + "\n" for ln in keep))


def read_stats(run_dir) -> list[dict]:
    path = Path(run_dir) / "stats.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def launch(cfg: TrainConfig, run_dir, nproc: int, resume=None, progress: bool = True, overwrite: bool = False) -> Path:
    """Run `train(cfg, run_dir)` as a torchrun job of `nproc` processes (gloo on CPU, NCCL on GPUs),
    following its progress from stats.jsonl; for notebooks. On a CPU each process gets
    cpu_count // nproc threads. Raises with the job's last output if it fails."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc: expected a positive integer, got {nproc!r}")
    claim_run_dir(run_dir, resume, overwrite)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    request = run_dir / "train_request.json"
    request.write_text(json.dumps(cfg.to_dict(), indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "polyinr.train", "--preset", cfg.preset, "--config", str(request), "--run-dir", str(run_dir),
           "--no-progress"] + (["--resume", str(resume)] if resume else [])
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    stats_path = run_dir / "stats.jsonl"
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        bar = progress_bar(total=cfg.kimg, unit="kimg", disable=not progress, desc=f"train x{nproc}")
        seen = 0
        while True:
            done = proc.poll() is not None
            lines = stats_path.read_text().splitlines() if stats_path.is_file() else []
            for ln in lines[seen:]:
                rec = json.loads(ln)
                bar.n = min(rec["kimg"], cfg.kimg)
                bar.set_postfix(d=f"{rec['d_loss']:.3f}", g=f"{rec['g_loss']:.3f}", ips=f"{rec['img_per_s']:.0f}")
                bar.refresh()
            seen = len(lines)
            if done:
                break
            time.sleep(1.0)
        bar.close()
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"torchrun job failed (exit {proc.returncode}): {' '.join(cmd)}\n" + log.read()[-4000:])
    return run_dir

