"""The training step of the recipe (StyleGAN-XL as used by the Poly-INR release, paper section 4) as
small functions: a D step on real and generated images (hinge or non-saturating loss, optional R1,
DiffAugment, optional fading blur), a G step (the same loss, optional classifier guidance), and the EMA of G. Each step accumulates
over micro-batches, averages gradients over processes and returns its named loss terms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.config import TrainConfig
from . import augment as aug
from .distributed import Dist
from .losses import D_LOSSES, G_LOSSES, classifier_guidance_loss, mode_seeking_loss, r1_penalty


class NonFiniteLossError(RuntimeError):
    pass


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 matrix products natively: a CUDA device with bf16 support, or a
    CPU on which oneDNN has a bf16 path (AVX-512 or AMX). Elsewhere (AVX2-only x86, most ARM laptops)
    bf16 autocast falls back to reference kernels that are an order of magnitude slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def precision_of(precision: str, device: torch.device) -> str:
    """The precision a run uses: "auto" is bf16 where `device` computes it natively, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16(torch.device(device)) else "fp32"
    return precision


def autocast(cfg: TrainConfig, device: torch.device):
    precision = precision_of(cfg.precision, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision: fp16 needs a CUDA device; use bf16 or auto on CPU")
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scalers(cfg: TrainConfig, device: torch.device) -> dict | None:
    """fp16 needs loss scaling (its exponent range is narrow); bf16 and fp32 do not."""
    if precision_of(cfg.precision, device) != "fp16":
        return None
    return {"D": torch.amp.GradScaler(device.type), "G": torch.amp.GradScaler(device.type)}


def g_param_groups(G, cfg: TrainConfig) -> list[dict]:
    """G's parameters with the per-sample style heads at lr_g * head_lr_mult (Poly-INR: A_i, M_i, t_i;
    the baselines: their style affines): those heads scale every feature multiplicatively, so they
    tolerate smaller steps than the shared weights."""
    heads = G.synthesis.head_parameters()
    ids = {id(p) for p in heads}
    rest = [p for p in G.parameters() if id(p) not in ids]
    return [{"params": rest, "lr": cfg.lr_g}, {"params": heads, "lr": cfg.lr_g * cfg.head_lr_mult}]


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
    loss: str = "hinge"               # "hinge" | "ns" (losses.D_LOSSES / G_LOSSES)
    r1_gamma: float = 0.0             # R1 weight; applied on the D steps asked for, times r1_every
    r1_every: int = 1
    ms_weight: float = 0.0            # mode-seeking term; the G batch then holds same-class pairs (0, 1), (2, 3), ...

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


def select(x, s):
    return None if x is None else x[s] if isinstance(x, torch.Tensor) else aug.slice_params(x, s)


def _micro_slices(n: int, micro: int | None):
    m = micro or n
    return [slice(i, min(i + m, n)) for i in range(0, n, m)]


def d_step(G, D, opt_D, real, c_real, z, c_fake, ctx: StepContext, aug_real=None, aug_fake=None,
           r1: bool = False) -> dict:
    """One D update on this process's batch: the loss (ctx.loss) on real and generated images, plus
    the R1 penalty on the real ones when `r1` (in fp32, weighted by ctx.r1_every: lazy
    regularisation), accumulated over micro-batches and averaged over processes. Also updates G's w_avg."""
    n = real.shape[0]
    D.requires_grad_(True)
    opt_D.zero_grad(set_to_none=True)
    out = {"d_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, **({"r1": 0.0} if r1 else {})}
    d_loss = D_LOSSES[ctx.loss]
    for s in _micro_slices(n, ctx.micro):
        w = (s.stop - s.start) / n
        with torch.no_grad(), _ctx(ctx):
            fake = G(z[s], select(c_fake, s), update_w_avg=True)
        with _ctx(ctx):
            x_real = ctx.d_input(real[s], select(aug_real, s))
            terms = d_loss(D(x_real, select(c_real, s)), D(ctx.d_input(fake.float(), select(aug_fake, s)), select(c_fake, s)))
        if r1:   # on the very input D judged, in fp32
            x = x_real.detach().float().requires_grad_(True)
            with torch.autocast(x.device.type, enabled=False):
                pen = r1_penalty(D(x, select(c_real, s)), x, ctx.r1_gamma)
            terms.update(loss=terms["loss"] + pen["loss"] * ctx.r1_every, r1=pen["r1"])
        bad = _nonfinite(terms)
        if bad:
            break
        ctx.backward(terms["loss"] * w, "D")
        for k, name in (("loss", "d_loss"), ("d_real", "d_real"), ("d_fake", "d_fake")) + ((("r1", "r1"),) if r1 else ()):
            out[name] += terms[k].item() * w
    _check_finite(bad, "D", ctx)
    if ctx.dist is not None:
        ctx.dist.all_reduce_grads(D.parameters())
    ctx.step(opt_D, "D")
    return out


def g_step(G, D, opt_G, z, c, ctx: StepContext, aug_fake=None) -> dict:
    """One G update: the loss (+ classifier guidance when cls_weight > 0), accumulated over
    micro-batches and averaged over processes."""
    n = z.shape[0]
    D.requires_grad_(False)
    opt_G.zero_grad(set_to_none=True)
    out = {"g_loss": 0.0}
    for s in _micro_slices(n, ctx.micro):
        w = (s.stop - s.start) / n
        with _ctx(ctx):
            fake = G(z[s], select(c, s))
            terms = G_LOSSES[ctx.loss](D(ctx.d_input(fake, select(aug_fake, s)), select(c, s)))
            loss = terms["loss"]
            out["g_loss"] += terms["g_adv"].item() * w
            if ctx.ms_weight > 0:
                ms = mode_seeking_loss(fake, z[s], ctx.ms_weight)
                loss = loss + ms["loss"]
                out["g_ms"] = out.get("g_ms", 0.0) + ms["g_ms"].item() * w
            if ctx.classifier is not None and ctx.cls_weight > 0:
                cls = classifier_guidance_loss(ctx.classifier(fake), select(c, s), ctx.cls_weight)
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
