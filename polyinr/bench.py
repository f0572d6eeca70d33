"""Benchmarks that print one JSON line each (timings never live in tests).

    python -m polyinr.bench render --preset imagenet --size 256 [--batch 1] [--dtype float32|bfloat16]
                                   [--chunk-pixels K] [--repeats 3]

`gemm_gflops_per_s` is torch.mm on the exact [chunk rows, n] x [n, n] shape and dtype that the
synthesis multiplies, measured in the same process; `roofline_ratio` = model / gemm throughput,
with the model's FLOPs counted from its shapes (`flops_per_pixel`).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def flops_per_pixel(cfg) -> int:
    """FLOPs (2 per multiply-add) of one pixel: per level the n x n product W_i (.) and the affine
    term A_i X (3n), plus the n -> 3 output layer. Element-wise work is not counted."""
    n = cfg.width
    return cfg.levels * (2 * n * n + 2 * 3 * n) + 2 * n * cfg.img_channels


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
    from . import build_generator, render
    from .render import _blocks, default_chunk
    torch.manual_seed(seed)
    G = build_generator(preset).eval().requires_grad_(False).to(device)
    cfg = G.cfg
    z = torch.randn(batch, cfg.z_dim, device=device)
    c = torch.arange(batch, device=device) % cfg.num_classes if cfg.conditional else None
    ws = G.mapping(z, c)
    chunk = chunk_pixels or default_chunk(cfg.width)
    rows = max((b1 - b0) * (p1 - p0) for b0, b1, p0, p1 in _blocks(batch, size * size, chunk))
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


def bench_train(preset: str = "letters", dtype: str = "float32", steps: int = 20, batch: int | None = None,
                resolution: int | None = None, seed: int = 0, device: str = "cpu", compile: bool = False,
                **overrides) -> dict:
    """img/s of the full training iteration (D step + G step + EMA) of a training preset, on
    synthetic data of the right shape (no dataset needed). peak memory: RSS on CPU, CUDA allocator on GPU."""
    import copy

    from .config import get_preset, get_train_preset
    from .model import Generator
    from .train import StepContext, autocast, build_D, d_step, g_step, update_ema
    from . import augment as aug
    precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype]
    cfg = get_train_preset(preset, precision=precision, compile=compile, **overrides,
                           **({"batch": batch} if batch else {}), **({"resolution": resolution} if resolution else {}))
    torch.manual_seed(seed)
    dev = torch.device(device)
    base = get_preset(cfg.preset)
    channels = 1 if cfg.dataset in ("letters", "digits") else 3
    mcfg = get_preset(cfg.preset, **{**cfg.g_overrides, "img_channels": channels, "resolution": cfg.resolution})
    G = Generator(mcfg, preset=cfg.preset).to(dev).train()
    if compile:
        G.synthesis.evaluate = torch.compile(G.synthesis.evaluate)
    D = build_D(cfg, channels, mcfg.num_classes).to(dev).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_D = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=cfg.betas)
    ctx = StepContext(policy=aug.parse_policy(cfg.diffaugment), aug_gen=torch.Generator().manual_seed(seed),
                      autocast=autocast(cfg, dev), blur_sigma=cfg.blur_init_sigma)
    B, R = cfg.batch, cfg.resolution
    real = torch.rand(B, channels, R, R, device=dev) * 2 - 1
    c = torch.randint(0, mcfg.num_classes, (B,), device=dev) if mcfg.conditional else None
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def iteration(i):
        z = torch.randn(B, mcfg.z_dim, device=dev)
        d_step(G, D, opt_D, real, c, z, c, ctx)
        g_step(G, D, opt_G, z, c, ctx)
        update_ema(G_ema, G, (i + 1) * B, B, cfg.ema_kimg, cfg.ema_rampup)

    warm = 3 if compile else 2
    for i in range(warm):
        iteration(i)
    sync()
    t = time.perf_counter()
    for i in range(steps):
        iteration(i)
    sync()
    seconds = (time.perf_counter() - t) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb()
    return {"bench": "train", "preset": preset, "dtype": dtype, "compile": compile, "batch": B, "resolution": R,
            "discriminator": cfg.discriminator, "width": mcfg.width, "levels": mcfg.levels,
            "seconds_per_step": float(f"{seconds:.6g}"), "img_per_s": float(f"{B / seconds:.6g}"),
            "peak_memory_mb": round(peak, 1), "threads": torch.get_num_threads(), "device": device,
            "torch": torch.__version__, "base_width": base.width}


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
    t.add_argument("--preset", default="letters", help="training preset")
    t.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--batch", type=int, default=None)
    t.add_argument("--resolution", type=int, default=None)
    t.add_argument("--compile", action="store_true")
    t.add_argument("--device", default="cpu")
    t.add_argument("--set", nargs=2, action="append", default=[], metavar=("FIELD", "VALUE"),
                   help="override a TrainConfig field (YAML value), e.g. --set g_overrides '{width: 64}'")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        import yaml
        over = {k: yaml.safe_load(v) for k, v in args.set}
        out = bench_train(args.preset, args.dtype, args.steps, args.batch, args.resolution, device=args.device,
                          compile=args.compile, **over)
    elif args.cmd == "render":
        from .config import get_preset
        size = args.size or get_preset(args.preset).resolution
        out = bench_render(args.preset, size, args.batch, args.dtype, args.chunk_pixels, args.repeats, args.seed,
                           args.device)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
