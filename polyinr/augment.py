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

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' or 'none' -> ()."""
    if policy is None or policy.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"diffaugment: unknown policy {bad}; expected a comma-separated subset of {POLICIES}")
    return parts


def _rand(shape, gen, x):
    return torch.rand(shape, generator=gen, device=gen.device if gen is not None else x.device).to(x.device, x.dtype)


def color(x, gen=None):
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5], each per image."""
    B = x.shape[0]
    x = x + (_rand((B, 1, 1, 1), gen, x) - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (_rand((B, 1, 1, 1), gen, x) * 2) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((B, 1, 1, 1), gen, x) + 0.5) + mean


def translation(x, gen=None, ratio: float = 0.125):
    """Shift each image by up to ratio * size pixels (integer), filling with zeros."""
    B, C, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    dev = x.device
    ty = torch.randint(-sh, sh + 1, (B, 1, 1), generator=gen, device=gen.device if gen is not None else dev).to(dev)
    tx = torch.randint(-sw, sw + 1, (B, 1, 1), generator=gen, device=gen.device if gen is not None else dev).to(dev)
    gy, gx = torch.meshgrid(torch.arange(H, device=dev), torch.arange(W, device=dev), indexing="ij")
    y = (gy[None] + ty + 1).clamp(0, H + 1)                                   # [B, H, W], in padded coords
    xx = (gx[None] + tx + 1).clamp(0, W + 1)
    padded = F.pad(x, [1, 1, 1, 1])                                           # [B, C, H+2, W+2]
    idx = (y * (W + 2) + xx).view(B, 1, H * W).expand(B, C, H * W)
    return padded.flatten(2).gather(2, idx).view(B, C, H, W)


def cutout(x, gen=None, ratio: float = 0.2):
    """Zero one square of side ratio * size at a random position in each image."""
    B, C, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    dev = x.device
    gd = gen.device if gen is not None else dev
    oy = torch.randint(0, H + (1 - ch % 2), (B, 1, 1), generator=gen, device=gd).to(dev)
    ox = torch.randint(0, W + (1 - cw % 2), (B, 1, 1), generator=gen, device=gd).to(dev)
    top, left = oy - ch // 2, ox - cw // 2                                   # [B, 1, 1]
    gy = torch.arange(H, device=dev).view(1, H, 1)
    gx = torch.arange(W, device=dev).view(1, 1, W)
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)  # [B, H, W]
    return x * (~inside)[:, None].to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diffaugment(x: torch.Tensor, policy=("color", "translation", "cutout"), gen: torch.Generator | None = None):
    """Apply the ops of `policy` (a tuple from parse_policy) in order; () is the identity."""
    for name in policy:
        x = _OPS[name](x, gen)
    return x


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
