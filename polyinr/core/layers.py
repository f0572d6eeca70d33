"""Layers shared by the generators: the equalised-learning-rate fully connected layer of StyleGAN2
(used by the mapping network and the per-level style layers) and StyleGAN2's weight modulation and
demodulation, written once for the per-pixel (fully connected) and the convolutional baselines.
Shape letters: B batch, P pixels, n channels (fan-in k), H, W image size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .grid import check_coords

SQRT2 = math.sqrt(2.0)


class FC(nn.Module):
    """Fully connected layer with equalised learning rate (StyleGAN2): weights ~ N(0, 1) / lr_mult,
    scaled by lr_mult / sqrt(fan_in) at run time; 'lrelu' is LeakyReLU(0.2) with gain sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, act: str = "linear", lr_mult: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        if self.act == "lrelu":
            x = F.leaky_relu(x, 0.2) * SQRT2
        return x

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.act}"


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def demodulation(weight: torch.Tensor, s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN2's demodulation coefficients d [B, n_out] for weight [n_out, k, ...] modulated by the
    styles s [B, k]: d = 1 / sqrt(sum over k (and the kernel) of (w s)^2), so that the modulated,
    demodulated layer keeps unit output variance for unit-variance input."""
    w2 = weight.square().flatten(2).sum(2) if weight.dim() > 2 else weight.square()   # [n_out, k]
    return (s.square() @ w2.t() + eps).rsqrt()                                          # [B, n_out]


class ModulatedFC(nn.Module):
    """A fully connected layer whose input channels are scaled per sample by styles s = affine(w)
    (and, with `demodulate`, whose outputs are renormalised), applied to every pixel of a sample:
    y = d * (W (x * s)) + b. The weights are shared; only s and d are per sample (StyleGAN2 eq. 1-3,
    as a 1x1 layer). Weights ~ N(0, 1) with the 1/sqrt(fan-in) gain at run time."""

    def __init__(self, w_dim: int, in_features: int, out_features: int, demodulate: bool = True, act: bool = True):
        super().__init__()
        self.affine = FC(w_dim, in_features)
        nn.init.ones_(self.affine.bias)                              # styles start at 1: unmodulated
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.gain = 1 / math.sqrt(in_features)
        self.demodulate, self.act = demodulate, act

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """[B, k] modulation and [B, n_out] demodulation of latents w [B, w_dim], concatenated."""
        s = self.affine(w) * self.gain                               # [B, k]
        d = demodulation(self.weight, s) if self.demodulate else torch.ones_like(s[:, :1]).expand(-1, self.weight.shape[0])
        return torch.cat([s, d], 1)

    def forward(self, x: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
        """x [B, P, k] with styles(w) [B, k + n_out] -> [B, P, n_out]."""
        k = self.weight.shape[1]
        s, d = sd[:, None, :k], sd[:, None, k:]
        y = F.linear(x * s.to(x.dtype), self.weight.to(x.dtype)) * d.to(x.dtype) + self.bias.to(x.dtype)
        return F.leaky_relu(y, 0.2) * SQRT2 if self.act else y


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated convolution (k x k, same padding), optionally after a 2x bilinear
    upsampling: y = d * conv(x * s, W) + b, with s = affine(w) per sample and input channel."""

    def __init__(self, w_dim: int, cin: int, cout: int, kernel: int = 3, demodulate: bool = True,
                 act: bool = True, up: bool = False):
        super().__init__()
        self.affine = FC(w_dim, cin)
        nn.init.ones_(self.affine.bias)
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1 / math.sqrt(cin * kernel * kernel)
        self.demodulate, self.act, self.up = demodulate, act, up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [B, cin, H, W], w [B, w_dim] -> [B, cout, H', W'] (H' = 2H when up)."""
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        s = self.affine(w) * self.gain                               # [B, cin]
        y = F.conv2d(x * s[:, :, None, None].to(x.dtype), self.weight.to(x.dtype), padding=self.weight.shape[-1] // 2)
        if self.demodulate:
            y = y * demodulation(self.weight, s)[:, :, None, None].to(x.dtype)
        y = y + self.bias.to(x.dtype)[None, :, None, None]
        return F.leaky_relu(y, 0.2) * SQRT2 if self.act else y


class SynthesisBase(nn.Module):
    """What every synthesis network offers the renderer (`polyinr.core.render`): `styles(ws)`, the
    per-latent part computed once, and `evaluate(styles, coords)`, the per-pixel part that may run in
    chunks of pixels; `head_parameters()` are the per-sample style heads (trained at
    lr_g * head_lr_mult). `any_grid`: whether it renders any coordinates (the INRs) or only the
    pixels of its native grid (the conv generator; other sizes are upsampled images)."""

    any_grid = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    def check_ws(self, ws: torch.Tensor) -> None:
        cfg = self.cfg
        if not isinstance(ws, torch.Tensor) or ws.dim() != 3 or ws.shape[1:] != (cfg.levels, cfg.w_dim):
            got = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise ValueError(f"ws: expected shape [B, {cfg.levels}, {cfg.w_dim}], got {got}")
        if ws.shape[0] == 0:
            raise ValueError(f"ws: expected at least one latent, got batch 0 ({list(ws.shape)})")

    def forward(self, ws: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """rgb [B, P, C] at coords [P, 2] or [B, P, 2]."""
        coords = check_coords(coords, ws.shape[0] if isinstance(ws, torch.Tensor) else None)
        return self.evaluate(self.styles(ws), coords)
