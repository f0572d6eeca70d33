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
import os
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


def grad_scalers(cfg: TrainConfig, device: torch.device) -> dict | None:
    """fp16 needs loss scaling (its exponent range is narrow); bf16 and fp32 do not."""
    if cfg.precision != "fp16":
        return None
    return {"D": torch.amp.GradScaler(device.type), "G": torch.amp.GradScaler(device.type)}


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


# ------------------------------------------------------------------------------------ distribution


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one). Gradients are averaged with
    one all-reduce of the flattened gradients per step (as StyleGAN3 does), so the D / G phases can
    toggle requires_grad freely."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_grads(self, params) -> None:
        if self.world == 1:
            return
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        torch.nn.utils.vector_to_parameters(flat, [p.grad for p in params])

    def mean(self, values: dict) -> dict:
        """Average a dict of floats over ranks."""
        if self.world == 1 or not values:
            return values
        t = torch.tensor([values[k] for k in sorted(values)], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return {k: v / self.world for k, v in zip(sorted(values), t.tolist())}

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_true(self, flag: bool) -> bool:
        """True only if `flag` is true on every rank (so every rank raises together)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())


def init_distributed(device=None) -> tuple[Dist, torch.device]:
    """Join the torchrun job named by the environment (RANK, WORLD_SIZE, LOCAL_RANK): NCCL on GPUs,
    gloo on CPUs. Without torchrun: a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if world == 1:
        return Dist(), torch.device(device or ("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    d = Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank)
    return d, torch.device(f"cuda:{local_rank}" if cuda else "cpu")


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
    micro: int | None = None          # micro-batch size (gradient accumulation); None = the whole batch
    dist: Dist | None = None
    scalers: dict | None = None       # {"D": GradScaler, "G": GradScaler} for fp16 (None otherwise)

    def backward(self, loss, which: str) -> None:
        scaler = self.scalers[which] if self.scalers else None
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, opt, which: str) -> None:
        """Optimizer step; with a grad scaler, unscale (skipping the step on inf/NaN grads) and update
        the scale. Gradients are all-reduced before this, so every rank takes the same decision."""
        scaler = self.scalers[which] if self.scalers else None
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()

    def d_input(self, x, params=None):
        """Blur, then DiffAugment with drawn `params` (drawn here from aug_gen when None)."""
        x = aug.gaussian_blur(x, self.blur_sigma)
        if params is None:
            return aug.diffaugment(x, self.policy, self.aug_gen)
        return aug.apply_params(x, params)


def _nonfinite(terms: dict) -> dict:
    return {k: v for k, v in ((k, float(torch.as_tensor(v).detach())) for k, v in terms.items()) if not math.isfinite(v)}


def _check_finite(bad: dict, what: str, ctx) -> None:
    """Raise NonFiniteLossError on every rank if any rank saw a non-finite loss."""
    ok = not bad
    if ctx.dist is not None:
        ok = ctx.dist.all_true(ok)
    if not ok:
        raise NonFiniteLossError(f"{what}: non-finite loss {bad or '(on another rank)'}; stopping "
                                 f"(the last checkpoint is intact)")


def _ctx(ctx):
    return ctx.autocast if ctx.autocast is not None else torch.autocast("cpu", enabled=False)


def _sel(x, s):
    return None if x is None else x[s] if isinstance(x, torch.Tensor) else aug.slice_params(x, s)


def _micro_slices(n: int, micro: int | None):
    m = micro or n
    return [slice(i, min(i + m, n)) for i in range(0, n, m)]


def d_step(G, D, opt_D, real, c_real, z, c_fake, ctx: StepContext, aug_real=None, aug_fake=None) -> dict:
    """One D update on this process's batch: hinge loss on real and generated images, accumulated
    over micro-batches and averaged over processes. Also updates G's w_avg."""
    n = real.shape[0]
    D.requires_grad_(True)
    opt_D.zero_grad(set_to_none=True)
    out = {"d_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
    for s in _micro_slices(n, ctx.micro):
        w = (s.stop - s.start) / n
        with torch.no_grad(), _ctx(ctx):
            fake = G(z[s], _sel(c_fake, s), update_w_avg=True)
        with _ctx(ctx):
            terms = d_hinge_loss(D(ctx.d_input(real[s], _sel(aug_real, s)), _sel(c_real, s)),
                                 D(ctx.d_input(fake.float(), _sel(aug_fake, s)), _sel(c_fake, s)))
        bad = _nonfinite(terms)
        if bad:
            break
        ctx.backward(terms["loss"] * w, "D")
        for k, name in (("loss", "d_loss"), ("d_real", "d_real"), ("d_fake", "d_fake")):
            out[name] += terms[k].item() * w
    _check_finite(bad, "D", ctx)
    if ctx.dist is not None:
        ctx.dist.all_reduce_grads(D.parameters())
    ctx.step(opt_D, "D")
    return out


def g_step(G, D, opt_G, z, c, ctx: StepContext, aug_fake=None) -> dict:
    """One G update: hinge loss (+ classifier guidance when cls_weight > 0), accumulated over
    micro-batches and averaged over processes."""
    n = z.shape[0]
    D.requires_grad_(False)
    opt_G.zero_grad(set_to_none=True)
    out = {"g_loss": 0.0}
    for s in _micro_slices(n, ctx.micro):
        w = (s.stop - s.start) / n
        with _ctx(ctx):
            fake = G(z[s], _sel(c, s))
            terms = g_hinge_loss(D(ctx.d_input(fake, _sel(aug_fake, s)), _sel(c, s)))
            loss = terms["loss"]
            out["g_loss"] += terms["g_adv"].item() * w
            if ctx.classifier is not None and ctx.cls_weight > 0:
                cls = classifier_guidance_loss(ctx.classifier(fake), _sel(c, s), ctx.cls_weight)
                loss = loss + cls["loss"]
                out["g_cls"] = out.get("g_cls", 0.0) + cls["g_cls"].item() * w
        bad = _nonfinite({"g_loss": loss})
        if bad:
            break
        ctx.backward(loss * w, "G")
    _check_finite(bad, "G", ctx)
    if ctx.dist is not None:
        ctx.dist.all_reduce_grads(G.parameters())
    ctx.step(opt_G, "G")
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


def gather_rng_states(dist: Dist) -> list[dict]:
    """Every rank's rng_state(), on every rank (serialised with torch.save, gathered as bytes)."""
    if dist.world == 1:
        return [rng_state()]
    import io
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.world)]
    torch.distributed.all_gather(sizes, torch.tensor([len(data)]))
    n = max(int(x) for x in sizes)
    parts = [torch.zeros(n, dtype=torch.uint8) for _ in range(dist.world)]
    torch.distributed.all_gather(parts, torch.cat([data, torch.zeros(n - len(data), dtype=torch.uint8)]))
    return [torch.load(io.BytesIO(p[: int(k)].numpy().tobytes()), weights_only=True) for p, k in zip(parts, sizes)]


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
    """Train according to `cfg` into `run_dir`; returns run_dir. Under torchrun every process calls
    this; rank 0 writes the run folder. `stop_after_steps` ends the loop early without a final
    checkpoint (used to simulate a crash in tests).

    Data parallelism: every rank draws the same global batch (indices, latents, augmentation), uses
    its slice of batch / world_size samples (in micro-batches of batch_gpu), and gradients are
    averaged over ranks, so the result does not depend on the number of processes. The global RNGs
    of rank r are seeded with seed * world_size + r (recorded in config.json)."""
    from .data import load_dataset
    from .experiments import provenance, write_json
    from .viz import save_grid

    dist, device = init_distributed(device)
    run_dir = Path(run_dir)
    B = cfg.batch
    if B % dist.world:
        raise ValueError(f"batch: the global batch {B} must be divisible by the number of processes {dist.world}")
    local = B // dist.world
    micro = cfg.batch_gpu or local
    if local % micro:
        raise ValueError(f"batch_gpu: the per-process batch {local} must be a multiple of batch_gpu {micro}")
    shard = slice(dist.rank * local, (dist.rank + 1) * local)
    if dist.main:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    seed_everything(cfg.seed)              # models are built identically on every rank and for any world size

    builtin = cfg.dataset in ("letters", "digits", "emoji")
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, split="train",
                           **({} if builtin else {"workers": cfg.workers}))
    mcfg = model_config_for(cfg, dataset)
    G = Generator(mcfg, preset=cfg.preset).to(device).train()
    D = build_D(cfg, dataset.channels, dataset.num_classes).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G = torch.optim.Adam(g_param_groups(G, cfg), lr=cfg.lr_g, betas=cfg.betas, eps=cfg.eps)
    opt_D = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=cfg.betas, eps=cfg.eps)
    sampler = Sampler(len(dataset), cfg.seed)                 # identical on every rank: the global stream
    latent_gen = torch.Generator().manual_seed(cfg.seed + 1)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 2)
    labels = dataset.labels
    cur_nimg, step, tick = 0, 0, 0
    stage_from = None
    seed_everything(cfg.seed * dist.world + dist.rank)   # per-rank global RNGs (the batch uses the generators above)

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
            rngs = ck.get("rng_ranks") or [ck["rng"]]
            set_rng_state(rngs[dist.rank] if len(rngs) == dist.world else rngs[0])
            cur_nimg, step, tick = int(ck["cur_nimg"]), int(ck["step"]), int(ck["tick"])
        else:
            stage_from = {"checkpoint": str(path), "resolution": ck_train.resolution if ck_train else None}

    scalers = grad_scalers(cfg, device)
    if scalers and resume is not None and "scalers" in ck:
        for k, s in scalers.items():
            s.load_state_dict(ck["scalers"][k])
    if cfg.compile:
        G.synthesis.evaluate = torch.compile(G.synthesis.evaluate)

    stats_path = run_dir / "stats.jsonl"
    if dist.main:
        config = {"train": cfg.to_dict(), "model": mcfg.to_dict(),
                  "dataset": {"name": dataset.name, "size": len(dataset), "num_classes": dataset.num_classes,
                              "channels": dataset.channels},
                  "seed": cfg.seed, "world_size": dist.world, "rank_seeds": [cfg.seed * dist.world + r
                                                                             for r in range(dist.world)],
                  "batch_per_process": local, "micro_batch": micro, "device": str(device),
                  "resumed_from": str(resume) if resume is not None else None, "stage_from": stage_from,
                  "provenance": provenance()}
        cfg_path = run_dir / "config.json"   # keep what a notebook wrote there (its parameters)
        write_json(cfg_path, {**(json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}), **config})
        _truncate_stats(stats_path, cur_nimg)

    ctx = StepContext(policy=aug.parse_policy(cfg.diffaugment), aug_gen=aug_gen, autocast=autocast(cfg, device),
                      classifier=build_classifier(cfg, device), cls_weight=cfg.cls_weight, micro=micro,
                      dist=dist if dist.world > 1 else None, scalers=scalers)
    grid_z, grid_c, grid_cols = grid_latents(mcfg, cfg.grid_rows, cfg.seed, device)
    if dist.main and not (run_dir / "samples" / "reals.png").exists():
        idx = torch.arange(min(len(dataset), grid_cols * cfg.grid_rows))
        if labels is not None:  # one real image per class column, like the fakes grid
            idx = torch.cat([torch.nonzero(labels == c)[r: r + 1, 0] for r in range(cfg.grid_rows)
                             for c in range(grid_cols)])
        save_grid(to_float(dataset.get_batch(idx)[0], "cpu"), run_dir / "samples" / "reals.png", nrow=grid_cols)

    def save(final: bool = False) -> None:
        rngs = gather_rng_states(dist)
        if dist.main:
            extra = {"G_ema": G_ema.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                     "opt_D": opt_D.state_dict(), "cur_nimg": cur_nimg, "step": step, "tick": tick,
                     "train_config": cfg.to_dict(), "sampler": sampler.state_dict(),
                     "latent_gen": latent_gen.get_state(), "aug_gen": aug_gen.get_state(), "rng": rngs[0],
                     "rng_ranks": rngs, "world_size": dist.world}
            if scalers:
                extra["scalers"] = {k: s.state_dict() for k, s in scalers.items()}
            save_checkpoint(run_dir / "latest.pt", G, **extra)
            if final:
                save_checkpoint(run_dir / "generator.pt", G_ema, train_config=cfg.to_dict(), cur_nimg=cur_nimg)
        dist.barrier()

    def snapshot_grids() -> None:
        from .render import render
        ws = G_ema.mapping(grid_z, grid_c)
        k = cur_nimg // 1000
        save_grid(render(G_ema, ws, cfg.resolution, cfg.resolution), run_dir / "samples" / f"fakes{k:06d}.png",
                  nrow=grid_cols)
        ws4 = ws[: 2 * grid_cols]                                   # 4x grid: the first two rows
        save_grid(render(G_ema, ws4, 4 * cfg.resolution, 4 * cfg.resolution),
                  run_dir / "samples" / f"fakes{k:06d}_x4.png", nrow=grid_cols)

    R = cfg.resolution
    total = int(cfg.kimg * 1000)
    tick_nimg = int(cfg.tick_kimg * 1000)
    next_tick = (cur_nimg // tick_nimg + 1) * tick_nimg
    bar = tqdm(total=total, initial=min(cur_nimg, total), unit="img", unit_scale=True,
               disable=not (progress and dist.main), dynamic_ncols=True, desc="train")
    tick_start, tick_nimg0, t0 = time.time(), cur_nimg, time.time()
    acc: dict[str, list[float]] = {}
    steps_this_process = 0
    try:
        while cur_nimg < total:
            ctx.blur_sigma = aug.blur_sigma(cur_nimg, cfg.blur_init_sigma, cfg.blur_fade_kimg)
            # The global batch, drawn identically on every rank; this rank keeps its shard.
            idx = sampler.next(B)
            z, c_fake = sample_latents(latent_gen, B, mcfg, labels, device)
            aug_real = aug.sample_params(ctx.policy, B, R, R, aug_gen, device)
            aug_fake = aug.sample_params(ctx.policy, B, R, R, aug_gen, device)
            real_u8, c_real = dataset.get_batch(idx[shard])
            real = to_float(real_u8, device)
            c_real = c_real.to(device) if c_real is not None else None
            terms = d_step(G, D, opt_D, real, c_real, z[shard], _sel(c_fake, shard), ctx,
                           _sel(aug_real, shard), _sel(aug_fake, shard))
            z, c_fake = sample_latents(latent_gen, B, mcfg, labels, device)
            aug_g = aug.sample_params(ctx.policy, B, R, R, aug_gen, device)
            terms.update(g_step(G, D, opt_G, z[shard], _sel(c_fake, shard), ctx, _sel(aug_g, shard)))
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
                means = dist.mean({k: float(np.mean(v)) for k, v in acc.items()})
                if dist.main:
                    line = {"tick": tick, "kimg": cur_nimg / 1000, "step": step,
                            "img_per_s": (cur_nimg - tick_nimg0) / max(now - tick_start, 1e-9),
                            "seconds": now - t0, "blur_sigma": ctx.blur_sigma, **means}
                    with open(stats_path, "a") as f:
                        f.write(json.dumps(line) + "\n")
                    snapshot_grids()
                if tick % cfg.snapshot_ticks == 0 or cur_nimg >= total:
                    save(final=cur_nimg >= total)
                acc, tick_start, tick_nimg0 = {}, time.time(), cur_nimg
                next_tick += tick_nimg
    finally:
        bar.close()
    if dist.main and not (run_dir / "generator.pt").exists():
        save_checkpoint(run_dir / "generator.pt", G_ema, train_config=cfg.to_dict(), cur_nimg=cur_nimg)
    dist.barrier()
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


def launch(cfg: TrainConfig, run_dir, nproc: int, resume=None, progress: bool = True) -> Path:
    """Run `train(cfg, run_dir)` as a torchrun job of `nproc` processes (gloo on CPU, NCCL on GPUs),
    following its progress from stats.jsonl; for notebooks. On a CPU each process gets
    cpu_count // nproc threads. Raises with the job's last output if it fails."""
    import subprocess
    import tempfile
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc: expected a positive integer, got {nproc!r}")
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
        bar = tqdm(total=cfg.kimg, unit="kimg", disable=not progress, desc=f"train x{nproc}")
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
        text = Path(args.config).read_text()   # JSON, or YAML (note: YAML reads 1e-8 as a string; write 1.0e-8)
        overrides.update((json.loads(text) if args.config.endswith(".json") else yaml.safe_load(text)) or {})
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
