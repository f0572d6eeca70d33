"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020), as used
by Projected GAN / StyleGAN-XL and so by the Poly-INR release, plus the fading Gaussian blur of the
discriminator's inputs (StyleGAN-XL: sigma 2 -> 0 over the first images).

Images are [B, C, H, W] in [-1, 1]. Every op draws from an explicit `torch.Generator`, so training
is reproducible and resumable, and every op is differentiable with respect to the images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_params(policy, n: int, height: int, width: int, gen: torch.Generator | None = None,
                  device="cpu") -> dict:
    """Draw the per-image parameters of `policy` for n images (in a fixed order), so that a batch
    split over processes or micro-batches is augmented exactly like the whole batch."""
    gd = gen.device if gen is not None else torch.device(device)
    p = {}
    for name in policy:
        if name == "color":      # brightness, saturation, contrast factors, each [n, 1, 1, 1]
            p["color"] = torch.rand(n, 3, generator=gen, device=gd).to(device)
        elif name == "translation":   # integer shifts (ty, tx) up to 1/8 of the size
            sh, sw = int(height * 0.125 + 0.5), int(width * 0.125 + 0.5)
            ty = torch.randint(-sh, sh + 1, (n,), generator=gen, device=gd)
            tx = torch.randint(-sw, sw + 1, (n,), generator=gen, device=gd)
            p["translation"] = torch.stack([ty, tx], 1).to(device)
        elif name == "cutout":   # centre of a square of side 1/5 of the size
            ch, cw = int(height * 0.2 + 0.5), int(width * 0.2 + 0.5)
            oy = torch.randint(0, height + (1 - ch % 2), (n,), generator=gen, device=gd)
            ox = torch.randint(0, width + (1 - cw % 2), (n,), generator=gen, device=gd)
            p["cutout"] = torch.stack([oy, ox], 1).to(device)
    return p


def slice_params(params: dict | None, s: slice) -> dict | None:
    return None if params is None else {k: v[s] for k, v in params.items()}


def color(x, r):
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]; r [B, 3] uniform in [0, 1)."""
    r = r.to(x.dtype)[:, :, None, None]                                       # [B, 3, 1, 1]
    x = x + (r[:, 0:1] - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (r[:, 1:2] * 2) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r[:, 2:3] + 0.5) + mean


def translation(x, t):
    """Shift image b by t[b] = (ty, tx) pixels, filling with zeros."""
    B, C, H, W = x.shape
    ty, tx = t[:, 0].view(B, 1, 1), t[:, 1].view(B, 1, 1)
    gy = torch.arange(H, device=x.device).view(1, H, 1)
    gx = torch.arange(W, device=x.device).view(1, 1, W)
    y = (gy - ty + 1).clamp(0, H + 1)                                         # source rows in padded coords
    xx = (gx - tx + 1).clamp(0, W + 1)
    padded = F.pad(x, [1, 1, 1, 1])                                           # [B, C, H+2, W+2]
    idx = (y * (W + 2) + xx).view(B, 1, H * W).expand(B, C, H * W)
    return padded.flatten(2).gather(2, idx).view(B, C, H, W)


def cutout(x, o):
    """Zero a square of side 1/5 of the size centred at o[b] = (oy, ox) (clipped at the border)."""
    B, C, H, W = x.shape
    ch, cw = int(H * 0.2 + 0.5), int(W * 0.2 + 0.5)
    top, left = (o[:, 0] - ch // 2).view(B, 1, 1), (o[:, 1] - cw // 2).view(B, 1, 1)
    gy = torch.arange(H, device=x.device).view(1, H, 1)
    gx = torch.arange(W, device=x.device).view(1, 1, W)
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)  # [B, H, W]
    return x * (~inside)[:, None].to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def apply_params(x: torch.Tensor, params: dict) -> torch.Tensor:
    """Apply drawn parameters (from sample_params) in policy order."""
    for name, p in params.items():
        x = _OPS[name](x, p.to(x.device))
    return x


def diffaugment(x: torch.Tensor, policy=("color", "translation", "cutout"), gen: torch.Generator | None = None):
    """Draw parameters for the images of x and apply the ops of `policy`; () is the identity."""
    if not policy:
        return x
    return apply_params(x, sample_params(policy, x.shape[0], x.shape[2], x.shape[3], gen, x.device))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with radius 3 sigma (reflect padding); sigma <= 0 is the identity."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # tiny images: clip the kernel to what reflect padding allows
        k = k[radius - pad: radius + pad + 1]
        k = k / k.sum()
    x = F.pad(x, [pad, pad, pad, pad], mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def blur_sigma(cur_nimg: float, init_sigma: float, fade_kimg: float) -> float:
    """Linear fade of the input blur from init_sigma at 0 images to 0 at fade_kimg thousand images."""
    if fade_kimg <= 0 or init_sigma <= 0:
        return 0.0
    return max(0.0, 1.0 - cur_nimg / (fade_kimg * 1e3)) * init_sigma
