"""Training (the StyleGAN-XL recipe of the Poly-INR release, paper section 4).

    python -m polyinr.train --preset letters --run-dir DIR [--kimg K] [--resolution R] [--resume DIR_OR_CKPT]

One iteration: a D step on real and generated images (hinge loss, DiffAugment, optional fading blur),
then a G step (hinge loss, optional classifier guidance), then the EMA of G. `train(cfg, run_dir)`
is the one entry point; it writes into `run_dir`:

    config.json     resolved TrainConfig, generator config, seed, package version, git commit
    stats.jsonl     one line per tick: kimg, losses, img/s, seconds
    samples/        fixed-seed sample grids every tick, at the training resolution and at 4x
    latest.pt       checkpoint (atomic): G, G_ema, D, optimisers, counters, RNG and sampler states
    generator.pt    the EMA generator alone, for `polyinr.load_generator`

`--resume` from a run of the same resolution continues it exactly; from a run at a lower resolution
it starts the next progressive stage: the generator (and its EMA) is kept, D and the optimisers
start fresh, and the image counter restarts at 0.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import augment as aug
from .checkpoint import atomic_save, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, get_preset, get_train_preset
from .discriminator import build_discriminator
from .losses import classifier_guidance_loss, d_hinge_loss, g_hinge_loss
from .model import Generator


class NonFiniteLossError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------- setup


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(cfg: TrainConfig, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ValueError("precision: fp16 needs a CUDA device; use bf16 on CPU")
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def model_config_for(cfg: TrainConfig, dataset) -> ModelConfig:
    """The preset with the run's overrides; classes, channels and resolution follow the dataset."""
    return get_preset(cfg.preset, **{**cfg.g_overrides, "num_classes": dataset.num_classes,
                                     "img_channels": dataset.channels, "resolution": cfg.resolution})


def build_D(cfg: TrainConfig, channels: int, num_classes: int):
    if cfg.discriminator == "conv":
        return build_discriminator("conv", channels, cfg.resolution, num_classes, width=cfg.d_width,
                                   max_width=cfg.d_max_width)
    return build_discriminator("projected", channels, cfg.resolution, num_classes, backbones=cfg.backbones,
                               input_size=cfg.d_input_size, pretrained=cfg.pretrained,
                               backbone_weights=cfg.backbone_weights, projection_seed=cfg.seed)


def build_classifier(cfg: TrainConfig, device):
    """Frozen classifier for guidance (cls_weight > 0): a timm ImageNet model or our letters CNN."""
    if cfg.cls_weight == 0:
        return None
    if cfg.cls_model == "letters":
        from .metrics import letters_classifier
        return letters_classifier(cfg.resolution).to(device)
    from .metrics import TimmClassifier
    return TimmClassifier(cfg.cls_model, pretrained=cfg.pretrained, backbone_weights=cfg.backbone_weights).to(device)


def g_param_groups(G, cfg: TrainConfig) -> list[dict]:
    """G's parameters with the per-level heads (A_i, M_i, t_i) at lr_g * head_lr_mult: those heads
    scale every feature multiplicatively, so they tolerate smaller steps than the shared weights."""
    heads = [p for lvl in G.synthesis.levels for m in (lvl.affine, lvl.warp) if m is not None for p in m.parameters()]
    ids = {id(p) for p in heads}
    rest = [p for p in G.parameters() if id(p) not in ids]
    return [{"params": rest, "lr": cfg.lr_g}, {"params": heads, "lr": cfg.lr_g * cfg.head_lr_mult}]


# -------------------------------------------------------------------------------------------- steps


@dataclass
class StepContext:
    """What a step needs besides the networks and the batch."""
    policy: tuple = ()
    aug_gen: torch.Generator | None = None
    blur_sigma: float = 0.0
    autocast: object = None
    classifier: torch.nn.Module | None = None
    cls_weight: float = 0.0

    def d_input(self, x):
        return aug.diffaugment(aug.gaussian_blur(x, self.blur_sigma), self.policy, self.aug_gen)


def _check_finite(terms: dict, what: str) -> None:
    bad = {k: float(v) for k, v in ((k, float(torch.as_tensor(v).detach())) for k, v in terms.items())
           if not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(f"{what}: non-finite loss {bad}; stopping (the last checkpoint is intact)")


def _ctx(ctx):
    return ctx.autocast if ctx.autocast is not None else torch.autocast("cpu", enabled=False)


def d_step(G, D, opt_D, real, c_real, z, c_fake, ctx: StepContext) -> dict:
    """One D update: hinge loss on real and generated images. Also updates G's w_avg."""
    with torch.no_grad(), _ctx(ctx):
        fake = G(z, c_fake, update_w_avg=True)
    D.requires_grad_(True)
    with _ctx(ctx):
        terms = d_hinge_loss(D(ctx.d_input(real), c_real), D(ctx.d_input(fake.float()), c_fake))
    _check_finite(terms, "D")
    opt_D.zero_grad(set_to_none=True)
    terms["loss"].backward()
    opt_D.step()
    return {"d_loss": terms["loss"].item(), "d_real": terms["d_real"].item(), "d_fake": terms["d_fake"].item()}


def g_step(G, D, opt_G, z, c, ctx: StepContext) -> dict:
    """One G update: hinge loss (+ classifier guidance when cls_weight > 0)."""
    D.requires_grad_(False)
    with _ctx(ctx):
        fake = G(z, c)
        terms = g_hinge_loss(D(ctx.d_input(fake), c))
        loss = terms["loss"]
        out = {"g_loss": terms["g_adv"].item()}
        if ctx.classifier is not None and ctx.cls_weight > 0:
            cls = classifier_guidance_loss(ctx.classifier(fake), c, ctx.cls_weight)
            loss = loss + cls["loss"]
            out["g_cls"] = cls["g_cls"].item()
    _check_finite({"g_loss": loss}, "G")
    opt_G.zero_grad(set_to_none=True)
    loss.backward()
    opt_G.step()
    return out


@torch.no_grad()
def update_ema(G_ema, G, cur_nimg: int, batch: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """G_ema <- G + beta (G_ema - G) with a half-life of ema_kimg thousand images (ramped up early)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
    return beta


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


def to_float(images_u8: torch.Tensor, device) -> torch.Tensor:
    return images_u8.to(device, non_blocking=True).float() / 127.5 - 1


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


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()),
                                                       *np_state[2:]],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    name, keys, *rest = s["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in s["python"]))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def resolve_resume(resume) -> Path:
    p = Path(resume)
    if p.is_dir():
        p = p / "latest.pt"
    if not p.is_file():
        raise FileNotFoundError(f"resume: {str(resume)!r} is neither a checkpoint file nor a run folder with latest.pt")
    return p


# --------------------------------------------------------------------------------------------- loop


def train(cfg: TrainConfig, run_dir, resume=None, progress: bool = True, device=None,
          stop_after_steps: int | None = None) -> Path:
    """Train according to `cfg` into `run_dir`; returns run_dir. `stop_after_steps` ends the process
    loop early without a final checkpoint (used to simulate a crash in tests)."""
    from .data import load_dataset
    from .experiments import provenance, write_json
    from .viz import save_grid

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run_dir = Path(run_dir)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    seed_everything(cfg.seed)

    builtin = cfg.dataset in ("letters", "digits", "emoji")
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, split="train",
                           **({} if builtin else {"workers": cfg.workers}))
    mcfg = model_config_for(cfg, dataset)
    G = Generator(mcfg, preset=cfg.preset).to(device).train()
    D = build_D(cfg, dataset.channels, dataset.num_classes).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G = torch.optim.Adam(g_param_groups(G, cfg), lr=cfg.lr_g, betas=cfg.betas, eps=cfg.eps)
    opt_D = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=cfg.betas, eps=cfg.eps)
    sampler = Sampler(len(dataset), cfg.seed)
    latent_gen = torch.Generator().manual_seed(cfg.seed + 1)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 2)
    labels = dataset.labels
    cur_nimg, step, tick = 0, 0, 0
    stage_from = None

    if resume is not None:
        path = resolve_resume(resume)
        ck = load_checkpoint(path)
        ck_cfg = ModelConfig.from_dict(ck["model_config"])
        ck_train = TrainConfig.from_dict(ck["train_config"]) if "train_config" in ck else None
        if dataclasses.replace(ck_cfg, resolution=mcfg.resolution) != mcfg:
            raise ValueError(f"resume: {str(path)!r} holds a generator with another configuration than this run")
        same_stage = ck_train is not None and ck_train.resolution == cfg.resolution and "D" in ck
        G.load_state_dict(ck["G"])
        G_ema.load_state_dict(ck.get("G_ema", ck["G"]))
        if same_stage:
            D.load_state_dict(ck["D"])
            opt_G.load_state_dict(ck["opt_G"])
            opt_D.load_state_dict(ck["opt_D"])
            sampler.load_state_dict(ck["sampler"])
            latent_gen.set_state(ck["latent_gen"])
            aug_gen.set_state(ck["aug_gen"])
            set_rng_state(ck["rng"])
            cur_nimg, step, tick = int(ck["cur_nimg"]), int(ck["step"]), int(ck["tick"])
        else:
            stage_from = {"checkpoint": str(path), "resolution": ck_train.resolution if ck_train else None}

    if cfg.compile:
        G.synthesis.evaluate = torch.compile(G.synthesis.evaluate)

    config = {"train": cfg.to_dict(), "model": mcfg.to_dict(), "dataset": {"name": dataset.name, "size": len(dataset),
              "num_classes": dataset.num_classes, "channels": dataset.channels}, "seed": cfg.seed,
              "resumed_from": str(resume) if resume is not None else None, "stage_from": stage_from,
              "provenance": provenance()}
    cfg_path = run_dir / "config.json"   # keep what a notebook wrote there (its parameters)
    write_json(cfg_path, {**(json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}), **config})
    stats_path = run_dir / "stats.jsonl"
    _truncate_stats(stats_path, cur_nimg)

    ctx = StepContext(policy=aug.parse_policy(cfg.diffaugment), aug_gen=aug_gen, autocast=autocast(cfg, device),
                      classifier=build_classifier(cfg, device), cls_weight=cfg.cls_weight)
    grid_z, grid_c, grid_cols = grid_latents(mcfg, cfg.grid_rows, cfg.seed, device)
    if not (run_dir / "samples" / "reals.png").exists():
        idx = torch.arange(min(len(dataset), grid_cols * cfg.grid_rows))
        if labels is not None:  # one real image per class column, like the fakes grid
            idx = torch.cat([torch.nonzero(labels == c)[r: r + 1, 0] for r in range(cfg.grid_rows)
                             for c in range(grid_cols)])
        save_grid(to_float(dataset.get_batch(idx)[0], "cpu"), run_dir / "samples" / "reals.png", nrow=grid_cols)

    def save(final: bool = False) -> None:
        extra = {"G_ema": G_ema.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                 "opt_D": opt_D.state_dict(), "cur_nimg": cur_nimg, "step": step, "tick": tick,
                 "train_config": cfg.to_dict(), "sampler": sampler.state_dict(),
                 "latent_gen": latent_gen.get_state(), "aug_gen": aug_gen.get_state(), "rng": rng_state()}
        save_checkpoint(run_dir / "latest.pt", G, **extra)
        if final:
            save_checkpoint(run_dir / "generator.pt", G_ema, train_config=cfg.to_dict(), cur_nimg=cur_nimg)

    def snapshot_grids() -> None:
        from .render import render
        ws = G_ema.mapping(grid_z, grid_c)
        k = cur_nimg // 1000
        save_grid(render(G_ema, ws, cfg.resolution, cfg.resolution), run_dir / "samples" / f"fakes{k:06d}.png",
                  nrow=grid_cols)
        ws4 = ws[: 2 * grid_cols]                                   # 4x grid: the first two rows
        save_grid(render(G_ema, ws4, 4 * cfg.resolution, 4 * cfg.resolution),
                  run_dir / "samples" / f"fakes{k:06d}_x4.png", nrow=grid_cols)

    total = int(cfg.kimg * 1000)
    tick_nimg = int(cfg.tick_kimg * 1000)
    next_tick = (cur_nimg // tick_nimg + 1) * tick_nimg
    bar = tqdm(total=total, initial=min(cur_nimg, total), unit="img", unit_scale=True, disable=not progress,
               dynamic_ncols=True,
               desc="train")
    tick_start, tick_nimg0, t0 = time.time(), cur_nimg, time.time()
    acc: dict[str, list[float]] = {}
    steps_this_process = 0
    try:
        while cur_nimg < total:
            B = cfg.batch
            ctx.blur_sigma = aug.blur_sigma(cur_nimg, cfg.blur_init_sigma, cfg.blur_fade_kimg)
            real_u8, c_real = dataset.get_batch(sampler.next(B))
            real = to_float(real_u8, device)
            c_real = c_real.to(device) if c_real is not None else None
            z, c_fake = sample_latents(latent_gen, B, mcfg, labels, device)
            terms = d_step(G, D, opt_D, real, c_real, z, c_fake, ctx)
            z, c_fake = sample_latents(latent_gen, B, mcfg, labels, device)
            terms.update(g_step(G, D, opt_G, z, c_fake, ctx))
            cur_nimg += B
            step += 1
            steps_this_process += 1
            update_ema(G_ema, G, cur_nimg, B, cfg.ema_kimg, cfg.ema_rampup)
            for k, v in terms.items():
                acc.setdefault(k, []).append(v)
            bar.update(B)
            if step % 10 == 0:
                bar.set_postfix(d=f"{terms['d_loss']:.3f}", g=f"{terms['g_loss']:.3f}",
                                ips=f"{(cur_nimg - tick_nimg0) / max(time.time() - tick_start, 1e-9):.0f}")
            if stop_after_steps is not None and steps_this_process >= stop_after_steps:
                return run_dir
            if cur_nimg >= next_tick or cur_nimg >= total:
                tick += 1
                now = time.time()
                line = {"tick": tick, "kimg": cur_nimg / 1000, "step": step,
                        "img_per_s": (cur_nimg - tick_nimg0) / max(now - tick_start, 1e-9),
                        "seconds": now - t0, "blur_sigma": ctx.blur_sigma,
                        **{k: float(np.mean(v)) for k, v in acc.items()}}
                with open(stats_path, "a") as f:
                    f.write(json.dumps(line) + "\n")
                snapshot_grids()
                if tick % cfg.snapshot_ticks == 0 or cur_nimg >= total:
                    save(final=cur_nimg >= total)
                acc, tick_start, tick_nimg0 = {}, time.time(), cur_nimg
                next_tick += tick_nimg
    finally:
        bar.close()
    if not (run_dir / "generator.pt").exists():
        save(final=True)
    return run_dir


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


# ---------------------------------------------------------------------------------------------- CLI


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
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    import yaml
    overrides = {}
    if args.config:
        overrides.update(yaml.safe_load(Path(args.config).read_text()) or {})
    overrides.update({k: yaml.safe_load(v) for k, v in args.set})
    for name in ["kimg", "resolution", "batch", "dataset", "seed", "discriminator", "precision", "backbone_weights"]:
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cfg = get_train_preset(args.preset, **overrides)
    train(cfg, args.run_dir, resume=args.resume, progress=not args.no_progress)
    print(args.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
