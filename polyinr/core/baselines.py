"""The two generator families the paper compares Poly-INR with (section 4, Tables 1-2), at any size,
behind the same mapping network, conditioning and rendering interface as Poly-INR (`ModelConfig.arch`):

- `conv`: a convolutional generator of the StyleGAN2 kind (Karras et al. 2020): a learned 4x4 constant,
  modulated-demodulated 3x3 convolutions (one at 4x4, two per 2x bilinear upsampling), and skip
  to-RGB outputs summed across resolutions. Per-pixel noise inputs are left out (Poly-INR has none).
  `levels` = 2 log2(R) - 3 style inputs for resolution R. It renders its native R x R grid only (any
  subset of those pixels, e.g. a crop); other sizes come from upsampling its images.
- `cips`: a per-pixel INR of the CIPS kind (Anokhin et al. 2021): each pixel's input is a learned Fourier
  feature of its coordinates, sin(B u + b), concatenated with a learned coordinate embedding (a
  `width / 2`-channel R x R grid, sampled bilinearly between its nodes and held at its border
  outside [0, 1]^2); `levels` modulated fully connected layers with to-RGB outputs after every second
  one, summed. Like Poly-INR it renders any coordinates.

Coordinates (x, y) in [0, 1]^2 follow `polyinr.core.grid`: pixel (r, c) of the R x R grid sits at
(c / (R - 1), r / (R - 1)). Shape letters: B batch, P pixels, L levels, n width, C image channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, conv_levels
from .layers import ModulatedConv, ModulatedFC, SynthesisBase


class ConvSynthesis(SynthesisBase):
    """ws [B, L, w_dim] -> the native R x R image, read out at the requested pixel coordinates."""

    any_grid = False

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        n, R, w = cfg.width, cfg.resolution, cfg.w_dim
        self.const = nn.Parameter(torch.randn(n, 4, 4))
        self.convs = nn.ModuleList([ModulatedConv(w, n, n)] + [ModulatedConv(w, n, n, up=(i % 2 == 0))
                                                                for i in range(conv_levels(R) - 1)])
        self.to_rgbs = nn.ModuleList(ModulatedConv(w, n, cfg.img_channels, kernel=1, demodulate=False, act=False)
                                     for _ in range(int(math.log2(R)) - 1))

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for m in list(self.convs) + list(self.to_rgbs) for p in m.affine.parameters()]

    def styles(self, ws: torch.Tensor) -> torch.Tensor:
        self.check_ws(ws)
        return ws

    def image(self, ws: torch.Tensor) -> torch.Tensor:
        """ws [B, L, w_dim] -> images [B, C, R, R] on the native grid."""
        x = self.convs[0](self.const.expand(ws.shape[0], -1, -1, -1).to(ws.dtype), ws[:, 0])   # [B, n, 4, 4]
        rgb = self.to_rgbs[0](x, ws[:, 0])
        for j, to_rgb in enumerate(self.to_rgbs[1:]):
            x = self.convs[2 * j + 1](x, ws[:, 2 * j + 1])                   # up 2x
            x = self.convs[2 * j + 2](x, ws[:, 2 * j + 2])
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(x, ws[:, 2 * j + 2])
        return rgb                                                             # [B, C, R, R]

    def pixel_index(self, coords: torch.Tensor) -> torch.Tensor:
        """Flat indices r * R + c of coords [..., 2] on the native grid; anything else is an error."""
        R = self.cfg.resolution
        rc = coords.flip(-1).float() * (R - 1)                                 # (row, column) in pixels
        idx = rc.round()
        if (idx - rc).abs().max() > 1e-3 or idx.min() < 0 or idx.max() > R - 1:
            raise ValueError(f"coords: the conv generator renders only its native {R}x{R} grid on [0, 1]^2 "
                             f"(pixel (r, c) at (c / {R - 1}, r / {R - 1})); upsample its images "
                             f"(polyinr.core.images.upsample) for other sizes or extents")
        return (idx[..., 0] * R + idx[..., 1]).long()

    def evaluate(self, A: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """rgb [B, P, C] at coords [P, 2] or [B, P, 2] of the native grid, for A = styles(ws)."""
        flat = self.image(A).flatten(2)                                        # [B, C, R * R]
        B, C, _ = flat.shape
        idx = self.pixel_index(coords).expand(B, -1)                           # [B, P] (coords [P, 2] or [1|B, P, 2])
        return torch.gather(flat, 2, idx[:, None].expand(B, C, -1)).transpose(1, 2)


class CIPSSynthesis(SynthesisBase):
    """ws [B, L, w_dim] and coordinates [P, 2] or [B, P, 2] -> rgb [B, P, C], pixel by pixel."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        n, R, w, C = cfg.width, cfg.resolution, cfg.w_dim, cfg.img_channels
        n_emb = n // 2
        self.fourier = nn.Linear(2, n - n_emb)                                 # sin(B u + b), u in [-1, 1]^2
        nn.init.uniform_(self.fourier.weight, -math.pi * R / 4, math.pi * R / 4)
        nn.init.uniform_(self.fourier.bias, -math.pi, math.pi)
        self.embedding = nn.Parameter(torch.randn(1, n_emb, R, R))             # learned coordinate embedding
        self.layers = nn.ModuleList(ModulatedFC(w, n, n) for _ in range(cfg.levels))
        self.rgb_at = [i for i in range(cfg.levels) if i % 2 == 1 or i == cfg.levels - 1]
        self.to_rgbs = nn.ModuleList(ModulatedFC(w, n, C, demodulate=False, act=False) for _ in self.rgb_at)

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for m in list(self.layers) + list(self.to_rgbs) for p in m.affine.parameters()]

    def styles(self, ws: torch.Tensor) -> torch.Tensor:
        """Every layer's modulation and demodulation, once per latent: [B, L + L_rgb, 2n] (to-RGB
        rows zero-padded from n + C)."""
        self.check_ws(ws)
        n = self.cfg.width
        rows = [m.styles(ws[:, i]) for i, m in enumerate(self.layers)]
        rows += [F.pad(m.styles(ws[:, i]), (0, 2 * n - m.weight.shape[0] - n)) for i, m in zip(self.rgb_at, self.to_rgbs)]
        return torch.stack(rows, 1)

    def inputs(self, coords: torch.Tensor, B: int, dtype) -> torch.Tensor:
        """Fourier features and embedding of coords [P, 2] or [B, P, 2] -> [B, P, n]."""
        u = coords.float() * 2 - 1                                            # [-1, 1]: grid_sample's frame
        grid = u if u.dim() == 3 else u[None]                                  # [1 or B, P, 2]
        emb = F.grid_sample(self.embedding.expand(grid.shape[0], -1, -1, -1), grid[:, None], mode="bilinear",
                            padding_mode="border", align_corners=True)[:, :, 0].transpose(1, 2)   # [., P, n_emb]
        x = torch.cat([torch.sin(self.fourier(grid)), emb], -1)
        return x.expand(B, -1, -1).to(dtype)

    def evaluate(self, A: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """rgb [B, P, C] at coords for A = styles(ws)."""
        L, C = len(self.layers), self.cfg.img_channels
        x = self.inputs(coords, A.shape[0], A.dtype)
        rgb, k = None, 0
        for i, layer in enumerate(self.layers):
            x = layer(x, A[:, i])
            if i in self.rgb_at:
                m = self.to_rgbs[k]
                y = m(x, A[:, L + k, : self.cfg.width + C])
                rgb, k = (y if rgb is None else rgb + y), k + 1
        return rgb
