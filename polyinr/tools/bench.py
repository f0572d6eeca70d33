"""Benchmarks that print one JSON line each (timings never live in tests).

    python -m polyinr.bench render --preset imagenet --size 256 [--batch 1] [--dtype float32|bfloat16]
                                   [--chunk-pixels K] [--repeats 3]
    python -m polyinr.bench train --preset letters [--dtype D] [--steps 20] [--compile]
    python -m polyinr.bench precision --preset letters [--rounds 8]     # bf16 vs fp32, interleaved
    python -m polyinr.bench memory --preset imagenet [--config FILE] [--processes 8]
    python -m polyinr.bench gpu [--out FILE]

`gemm_gflops_per_s` is torch.mm on the exact [chunk rows, n] x [n, n] shape and dtype that the
synthesis multiplies, measured in the same process; `roofline_ratio` = model / gemm throughput,
with the model's FLOPs counted from its shapes (`flops_per_pixel`).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from ..core.config import get_preset, get_train_preset, parse_policy
from ..core.model import Generator, build_generator, flops_per_pixel
from ..core.render import default_chunk, pixel_blocks, render
from ..studies import inr
from ..training.discriminator import build_D
from ..training.distributed import Dist, init_distributed
from ..training.steps import StepContext, autocast, d_step, g_param_groups, g_step, grad_scalers, update_ema

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}




def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gemm_gflops(rows: int, n: int, dtype: torch.dtype, device="cpu", min_seconds: float = 0.5) -> float:
    """Throughput of torch.mm on [rows, n] x [n, n] in `dtype`."""
    a = torch.randn(rows, n, device=device).to(dtype)
    w = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            torch.mm(a, w)
        sync()
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_seconds:
            torch.mm(a, w)
            reps += 1
        sync()
        dt = time.perf_counter() - t0
    return 2 * rows * n * n * reps / dt / 1e9


def bench_render(preset: str, size: int, batch: int = 1, dtype: str = "float32", chunk_pixels: int | None = None,
                 repeats: int = 3, seed: int = 0, device: str = "cpu") -> dict:
    torch.manual_seed(seed)
    G = build_generator(preset).eval().requires_grad_(False).to(device)
    cfg = G.cfg
    z = torch.randn(batch, cfg.z_dim, device=device)
    c = torch.arange(batch, device=device) % cfg.num_classes if cfg.conditional else None
    ws = G.mapping(z, c)
    chunk = chunk_pixels or default_chunk(cfg.width, device)
    rows = max((b1 - b0) * (p1 - p0) for b0, b1, p0, p1 in pixel_blocks(batch, size * size, chunk))
    dt = DTYPES[dtype]
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def run():
        render(G, ws, size, size, chunk_pixels=chunk, dtype=dt)
        sync()

    seconds = _median_seconds(run, repeats)
    pixels = batch * size * size
    model_gf = flops_per_pixel(cfg) * pixels / seconds / 1e9
    gemm_gf = gemm_gflops(rows, cfg.width, dt, device)
    return {
        "bench": "render", "preset": preset, "size": size, "batch": batch, "dtype": dtype,
        "chunk_pixels": chunk, "chunk_rows": rows, "seconds": float(f"{seconds:.6g}"),
        "mpix_per_s": float(f"{pixels / seconds / 1e6:.6g}"),
        "model_gflops_per_s": float(f"{model_gf:.6g}"), "gemm_gflops_per_s": float(f"{gemm_gf:.6g}"),
        "roofline_ratio": round(model_gf / gemm_gf, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": torch.get_num_threads(), "device": device, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def _train_iteration(preset: str, dtype: str, batch: int | None, resolution: int | None, seed: int, dist, dev,
                     compile: bool = False, **overrides):
    """One full training iteration (D step + G step + EMA) of a training preset on synthetic data of the
    right shape, as a function of the step index; also returns the configs and the local batch."""
    precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype]
    cfg = get_train_preset(preset, precision=precision, compile=compile, **overrides,
                           **({"batch": batch} if batch else {}), **({"resolution": resolution} if resolution else {}))
    torch.manual_seed(seed)
    channels = 1 if cfg.dataset in ("letters", "digits") else 3
    mcfg = get_preset(cfg.preset, **{**cfg.g_overrides, "img_channels": channels, "resolution": cfg.resolution})
    G = Generator(mcfg, preset=cfg.preset).to(dev).train()
    if compile:
        G.synthesis.evaluate = torch.compile(G.synthesis.evaluate)
    D = build_D(cfg, channels, mcfg.num_classes).to(dev).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G = torch.optim.Adam(g_param_groups(G, cfg), lr=cfg.lr_g, betas=cfg.betas)
    opt_D = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=cfg.betas)
    ctx = StepContext(policy=parse_policy(cfg.diffaugment), aug_gen=torch.Generator().manual_seed(seed),
                      autocast=autocast(cfg, dev), blur_sigma=cfg.blur_init_sigma, micro=cfg.batch_gpu,
                      dist=dist if dist.world > 1 else None, scalers=grad_scalers(cfg, dev))
    B, R = cfg.batch, cfg.resolution
    local = B // dist.world
    real = torch.rand(local, channels, R, R, device=dev) * 2 - 1
    c = torch.randint(0, mcfg.num_classes, (local,), device=dev) if mcfg.conditional else None

    def iteration(i):
        z = torch.randn(local, mcfg.z_dim, device=dev)
        d_step(G, D, opt_D, real, c, z, c, ctx)
        g_step(G, D, opt_G, z, c, ctx)
        update_ema(G_ema, G, (i + 1) * B, B, cfg.ema_kimg, cfg.ema_rampup)
    return iteration, cfg, mcfg, local


def bench_train(preset: str = "letters", dtype: str = "float32", steps: int = 20, batch: int | None = None,
                resolution: int | None = None, seed: int = 0, device: str | None = None, compile: bool = False,
                **overrides) -> dict:
    """img/s of the full training iteration (D step + G step + EMA) of a training preset, on
    synthetic data of the right shape (no dataset needed). Under torchrun every process runs its
    share of the global batch and gradients are all-reduced, as in training; rank 0 reports.
    Peak memory: RSS on CPU, the CUDA allocator's peak on GPU."""
    dist, dev = init_distributed(device)
    iteration, cfg, mcfg, local = _train_iteration(preset, dtype, batch, resolution, seed, dist, dev, compile,
                                                   **overrides)
    B, R = cfg.batch, cfg.resolution
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm = 3 if compile else 2
    for i in range(warm):
        iteration(i)
    sync()
    dist.barrier()
    t = time.perf_counter()
    for i in range(steps):
        iteration(i)
    sync()
    dist.barrier()
    seconds = (time.perf_counter() - t) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb()
    return {"bench": "train", "preset": preset, "dtype": dtype, "compile": compile, "batch": B,
            "batch_gpu": cfg.batch_gpu or local, "processes": dist.world, "resolution": R,
            "discriminator": cfg.discriminator, "width": mcfg.width, "levels": mcfg.levels,
            "seconds_per_step": float(f"{seconds:.6g}"), "img_per_s": float(f"{B / seconds:.6g}"),
            "peak_memory_mb": round(peak, 1), "threads": torch.get_num_threads(), "device": str(dev),
            "torch": torch.__version__, "base_width": get_preset(cfg.preset).width, "rank": dist.rank}


def _op_micro_us(rows: int, n: int, dtype: torch.dtype, repeats: int) -> dict:
    """Median microseconds of the synthesis's per-level operations on one [rows, n] feature map."""
    h = torch.randn(rows, n).to(dtype)
    g = torch.randn(rows, n).to(dtype)
    W, b = torch.randn(n, n).to(dtype), torch.randn(n).to(dtype)
    X, A = torch.rand(1, rows, 3).to(dtype), torch.randn(1, 3, n).to(dtype)
    ops = {
        "linear": lambda: F.linear(h, W, b),                        # W_i (.) + bias
        "bmm_coords": lambda: torch.bmm(X, A),                      # A_i X (K = 3)
        "mul": lambda: h * g,                                       # (A_i X) * h_{i-1}
        "leaky_relu": lambda: F.leaky_relu(h, 0.2),
        "leaky_relu_backward": lambda: torch.ops.aten.leaky_relu_backward(g, h, 0.2, False),
        "clamp": lambda: F.hardtanh(h, -256.0, 256.0),
        "clamp_backward": lambda: torch.ops.aten.hardtanh_backward(g, h, -256.0, 256.0),
    }
    out = {}
    with torch.no_grad():
        for name, fn in ops.items():
            out[name] = round(_median_seconds(fn, repeats, warmup=3) * 1e6, 1)
    return out


def bench_precision(preset: str = "letters", rounds: int = 8, steps_per_round: int = 4, batch: int | None = None,
                    resolution: int | None = None, seed: int = 0, op_repeats: int = 30, compile: bool = False,
                    **overrides) -> dict:
    """bfloat16 autocast against float32 on the CPU, measured so that machine drift cancels: both
    training iterations live in one process and run in alternating rounds of `steps_per_round` steps;
    `ratio` is the median over rounds of (float32 seconds / bfloat16 seconds). `op_us` times the
    synthesis's per-level operations on one [batch * pixels, width] feature map in both dtypes, which
    shows where bfloat16 gains (the matrix products) and where it does not (element-wise passes)."""
    dev = torch.device("cpu")
    its = {}
    for dtype in ("float32", "bfloat16"):
        its[dtype], cfg, mcfg, local = _train_iteration(preset, dtype, batch, resolution, seed, Dist(), dev,
                                                        compile, **overrides)
    for dtype, it in its.items():
        for i in range(3 if compile else 2):
            it(i)
    seconds = {d: [] for d in its}
    for r in range(rounds):
        for dtype, it in its.items():
            t = time.perf_counter()
            for i in range(steps_per_round):
                it(i)
            seconds[dtype].append((time.perf_counter() - t) / steps_per_round)
    ratios = [a / b for a, b in zip(seconds["float32"], seconds["bfloat16"])]
    B = cfg.batch
    rows = local * cfg.resolution ** 2
    op_us = {d: _op_micro_us(rows, mcfg.width, DTYPES[d], op_repeats) for d in its}
    return {"bench": "precision", "preset": preset, "compile": compile, "batch": B, "resolution": cfg.resolution,
            "width": mcfg.width, "rounds": rounds, "steps_per_round": steps_per_round,
            "img_per_s": {d: float(f"{B / statistics.median(s):.6g}") for d, s in seconds.items()},
            "seconds_per_step": {d: [float(f"{x:.6g}") for x in s] for d, s in seconds.items()},
            "ratio": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3), "feature_map": [rows, mcfg.width], "op_us": op_us,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def estimate_training_memory(cfg, processes: int = 1, channels: int = 3, num_classes: int | None = None) -> dict:
    """Memory per process of a training configuration, computed from shapes on the meta device (no
    memory is allocated): weights, gradients, Adam states and the EMA copy, plus the activations
    autograd saves for one micro-batch in the G step (G forward + D forward with gradients to the
    images, counted with saved-tensor hooks) and in the D step. float32 throughout; bf16 autocast
    roughly halves the activation part. Transient buffers and allocator slack are not counted."""
    cfg = dataclasses.replace(cfg, pretrained=False, backbone_weights=None)   # shapes only: no weights needed
    num_classes = get_preset(cfg.preset).num_classes if num_classes is None else num_classes
    local = cfg.batch // processes
    b = cfg.batch_gpu or local
    R = cfg.resolution
    mcfg = get_preset(cfg.preset, **{**cfg.g_overrides, "img_channels": channels, "num_classes": num_classes,
                                     "resolution": R})
    with torch.device("meta"):
        G = Generator(mcfg, preset=cfg.preset)
        D = build_D(cfg, channels, num_classes)

    def saved_bytes(fn) -> int:
        seen, total = set(), [0]

        def pack(t):
            if id(t) not in seen:
                seen.add(id(t))
                total[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return total[0]

    z = torch.zeros(b, mcfg.z_dim, device="meta")
    c = torch.zeros(b, dtype=torch.long, device="meta") if num_classes else None
    x = torch.zeros(b, channels, R, R, device="meta")
    D.requires_grad_(False)
    g_act = saved_bytes(lambda: D(G(z, c), c))                      # G step: through D into G
    for p in D.parameters():
        p.requires_grad_(False)
    heads = [p for n, p in D.named_parameters() if not n.startswith(("features", "projections"))] \
        if cfg.discriminator == "projected" else list(D.parameters())
    for p in heads:
        p.requires_grad_(True)
    d_act = saved_bytes(lambda: (D(x, c), D(x, c)))                 # D step: real and fake, grads to D
    n_g = sum(p.numel() for p in G.parameters())
    n_d_train = sum(p.numel() for p in heads)
    n_d_frozen = sum(p.numel() for p in D.parameters()) - n_d_train
    static = 4 * (5 * n_g + 4 * n_d_train + n_d_frozen)             # G: w, grad, 2 Adam, EMA; D heads: w, grad, 2 Adam
    gb = 2 ** 30
    return {"preset": cfg.preset, "resolution": R, "processes": processes, "batch": cfg.batch, "batch_gpu": b,
            "g_params": n_g, "d_trainable_params": n_d_train, "d_frozen_params": n_d_frozen,
            "static_gb": round(static / gb, 2), "g_step_activations_gb": round(g_act / gb, 2),
            "d_step_activations_gb": round(d_act / gb, 2),
            "total_gb": round((static + max(g_act, d_act)) / gb, 2),
            "bytes": {"static": static, "g_step_activations": g_act, "d_step_activations": d_act}}


def bench_inr_fit(name: str = "polyinr", size: int = 512, steps: int = 50, device: str = "cpu", lr: float = 1e-3,
                  **poly_kw) -> dict:
    """Seconds per full-batch Adam step of one fit of the generalisation protocol (`inr.generalization_fit`,
    natural image, `size`²) on `device`, with its held-out PSNR after `steps` steps. The GPU check uses
    notebook 00's Poly-INR settings (lr 1e-3, inputs on [-1, 1])."""
    r = inr.generalization_fit(name, "natural", "astronaut", size, steps, lr, device=device, **poly_kw)
    return {"bench": "inr_fit", "model": name, "size": size, "steps": steps, "params": r["params"],
            "seconds_per_step": float(f"{r['seconds_per_step']:.6g}"), "heldout_psnr": round(r["heldout"], 3),
            "device": r["device"], "threads": torch.get_num_threads(), "torch": torch.__version__}


def bench_gpu(device: str = "cuda", quick: bool = False, out=None, echo=None) -> list[dict]:
    """The GPU check (< 5 minutes on one GPU): rendering of `imagenet` at 256 and 512 in fp32 and
    bf16 against the matmul roofline, and training img/s and peak memory of `imagenet` at 32x32
    with the projected discriminator (random backbones) in fp32, bf16 and bf16 + torch.compile, and the
    step time of one Poly-INR fit of the generalisation protocol at 512² (50 steps). On CUDA it also times
    float16 training (autocast + gradient scaler).
    Each row goes to `out` (JSON lines, rewritten after every row) and to `echo` as soon as it is measured,
    so a run stopped early keeps what it finished.
    quick=True runs the same code path at toy sizes (for tests on a CPU)."""
    rows = []

    def add(row):
        rows.append(row)
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text("".join(json.dumps(r) + "\n" for r in rows))
        if echo is not None:
            echo(row)
    if quick:
        renders = [("letters", 16, 2)]
        train = dict(preset="letters", batch=4, resolution=8, g_overrides={"width": 16, "levels": 3}, steps=2,
                     discriminator="projected", backbones=("tf_efficientnet_lite0",), d_input_size=32,
                     pretrained=False, tick_kimg=1.0)
        variants = [("float32", False)]
    else:
        renders = [("imagenet", 256, 8), ("imagenet", 512, 2)]
        train = dict(preset="imagenet", batch=64, resolution=32, steps=10, pretrained=False)
        variants = [("float32", False), ("bfloat16", False), ("bfloat16", True)]
        if torch.device(device).type == "cuda":
            variants.append(("float16", False))
    for preset, size, batch in renders:
        for dtype in ("float32", "bfloat16"):
            add(bench_render(preset, size, batch, dtype, repeats=2 if quick else 3, device=device))
    for dtype, compile_ in variants:
        kw = dict(train)
        p, steps = kw.pop("preset"), kw.pop("steps")
        b, r = kw.pop("batch"), kw.pop("resolution")
        add(bench_train(p, dtype, steps, b, r, device=device, compile=compile_, **kw))
    add(bench_inr_fit("polyinr", 16 if quick else 512, 3 if quick else 50, device, coord_range=(-1.0, 1.0)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polyinr.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="rendering throughput against the matmul roofline")
    r.add_argument("--preset", default="letters")
    r.add_argument("--size", type=int, default=None, help="image side (default: the preset's resolution)")
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    r.add_argument("--chunk-pixels", type=int, default=None)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cpu")
    t = sub.add_parser("train", help="img/s of the full G+D training iteration")
    t.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    pr = sub.add_parser("precision", help="bfloat16 vs float32 training on the CPU, interleaved in one process")
    pr.add_argument("--rounds", type=int, default=8)
    pr.add_argument("--steps-per-round", type=int, default=4)
    for p in (t, pr):   # the training iteration both measure
        p.add_argument("--preset", default="letters", help="training preset")
        p.add_argument("--batch", type=int, default=None)
        p.add_argument("--resolution", type=int, default=None)
        p.add_argument("--compile", action="store_true", help="torch.compile the synthesis")
        p.add_argument("--set", nargs=2, action="append", default=[], metavar=("FIELD", "VALUE"),
                       help="override a TrainConfig field (YAML value), e.g. --set g_overrides '{width: 64}'")
    m = sub.add_parser("memory", help="memory per process of a training configuration, from shapes")
    m.add_argument("--preset", default="imagenet", help="training preset")
    m.add_argument("--config", default=None, help="YAML/JSON of TrainConfig fields (e.g. experiments/configs/train/...)")
    m.add_argument("--processes", type=int, default=8)
    gp = sub.add_parser("gpu", help="the GPU check: render roofline and imagenet training throughput / memory")
    gp.add_argument("--device", default="cuda")
    gp.add_argument("--quick", action="store_true", help="toy sizes (exercises the code path on a CPU)")
    gp.add_argument("--out", default=None, help="also write the JSON lines to this file")
    args = ap.parse_args(argv)
    if args.cmd == "gpu":
        bench_gpu(args.device, args.quick, args.out, echo=lambda row: print(json.dumps(row), flush=True))
        return 0
    over = {k: yaml.safe_load(v) for k, v in getattr(args, "set", [])}
    if args.cmd == "memory":
        over = yaml.safe_load(open(args.config).read()) if args.config else {}
        out = estimate_training_memory(get_train_preset(args.preset, **(over or {})), args.processes)
    elif args.cmd == "train":
        out = bench_train(args.preset, args.dtype, args.steps, args.batch, args.resolution, device=args.device,
                          compile=args.compile, **over)
        if out["rank"] != 0:
            return 0
    elif args.cmd == "precision":
        out = bench_precision(args.preset, args.rounds, args.steps_per_round, args.batch, args.resolution,
                              compile=args.compile, **over)
    elif args.cmd == "render":
        size = args.size or get_preset(args.preset).resolution
        out = bench_render(args.preset, size, args.batch, args.dtype, args.chunk_pixels, args.repeats, args.seed,
                           args.device)
    print(json.dumps(out), flush=True)
    return 0
