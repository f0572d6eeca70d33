"""The Poly-INR generator (Singh, Shukla & Turaga, CVPR 2023, section 3; Fig. 2).

An image is a function of pixel coordinates X = [x; y; 1]. Level i multiplies its features
element-wise by an affine function of the coordinates, A_i X, whose coefficients come from the
latent w_i, so L levels reach polynomial degree L (paper eq. 4-5):

    h_0 = sigma(W_0 (A_0 X)),    h_i = sigma(W_i ((A_i X) * h_{i-1})),    rgb = W_rgb h_{L-1}

Released structure (the default; switch parts off with `ModelConfig.warp`, `coord_act`,
`style_fc`, `clamp`, `slope` to reach the paper's pure form above):
- levels >= 1 compute s = FC(w_i -> n, lrelu) before their heads (`style_fc`);
- each level's heads give A_i (rows a, b, c) and a 2x2 matrix M_i with translation t_i that warp
  the grid cumulatively, G <- G M_i + t_i (`warp`);
- levels >= 1 apply LeakyReLU to A_i X before the product (`coord_act`);
- every level's output is clamped to [-256, 256] (`clamp`).

Coordinates are a call argument (coords[..., 0] = x, the column / horizontal axis;
coords[..., 1] = y, the row / vertical axis), so one model renders any grid, crop or extent.
Shape letters: B batch, P pixels, L levels, n channels, H, W image size.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .baselines import CIPSSynthesis, ConvSynthesis
from .config import ModelConfig, conv_levels, get_preset
from .grid import check_coords
from .layers import FC, SynthesisBase, normalize_2nd_moment
from .render import synthesize


def check_classes(c, num_classes: int, batch: int, device) -> torch.Tensor | None:
    """Class ids [batch] (long) for a conditional model; None for an unconditional one, which has the one
    implicit class 0: it takes c=None or ids that are all 0 (so code written for any model can pass ids)."""
    if num_classes == 0:
        if c is not None:
            c = torch.as_tensor(c)
            if c.dtype.is_floating_point or c.dtype == torch.bool or c.numel() and bool((c != 0).any()):
                raise ValueError("c: this generator is unconditional (num_classes=0); pass c=None (or class ids "
                                 "that are all 0, its one implicit class)")
        return None
    if c is None:
        raise ValueError(f"c: this generator is class-conditional ({num_classes} classes); "
                         f"pass integer class ids of shape [{batch}]")
    c = torch.as_tensor(c, device=device)
    if c.dim() == 0:
        c = c.expand(batch)
    if c.dtype.is_floating_point or c.dtype == torch.bool or c.dtype.is_complex:
        raise ValueError(f"c: expected integer class ids, got dtype {c.dtype}")
    if c.shape != (batch,):
        raise ValueError(f"c: expected shape [{batch}] (one class id per latent), got {list(c.shape)}")
    if batch and not c.is_meta and (int(c.min()) < 0 or int(c.max()) >= num_classes):
        raise ValueError(f"c: class ids must be in [0, {num_classes - 1}], got min {int(c.min())}, "
                         f"max {int(c.max())}")
    return c.long()


def check_psi(psi) -> float:
    """Truncation psi: any finite number (1 = none, 0 = the average w, > 1 extrapolates)."""
    if isinstance(psi, bool) or not isinstance(psi, numbers.Real) or not math.isfinite(psi):
        raise ValueError(f"psi: expected a finite number (1.0 = no truncation), got {psi!r}")
    return float(psi)


class MappingNetwork(nn.Module):
    """z (+ class) -> w, broadcast to one copy per level: ws [B, L, w_dim]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        in_dim = cfg.z_dim
        if cfg.conditional:
            self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
            self.embed_proj = FC(cfg.embed_dim, cfg.z_dim, act="lrelu")
            in_dim += cfg.z_dim
        dims = [in_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.fcs = nn.ModuleList(FC(a, b, act="lrelu", lr_mult=cfg.mapping_lr_mult) for a, b in zip(dims[:-1], dims[1:]))
        w_avg_shape = [cfg.num_classes, cfg.w_dim] if cfg.conditional else [cfg.w_dim]
        self.register_buffer("w_avg", torch.zeros(w_avg_shape))

    def forward(self, z: torch.Tensor, c=None, psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        cfg = self.cfg
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != cfg.z_dim:
            raise ValueError(f"z: expected a tensor of shape [B, {cfg.z_dim}], got "
                             f"{list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
        if z.shape[0] == 0:
            raise ValueError(f"z: expected at least one latent, got batch 0 ({list(z.shape)})")
        psi = check_psi(psi)
        c = check_classes(c, cfg.num_classes, z.shape[0], z.device)
        if z.is_meta:   # shape-only runs (memory estimates)
            return self.unchecked(z.float(), c, psi, update_w_avg)
        with torch.autocast(z.device.type, enabled=False):   # tiny and precision-sensitive: always fp32
            return self.unchecked(z.float(), c, psi, update_w_avg)

    def unchecked(self, z: torch.Tensor, c: torch.Tensor | None, psi: float = 1.0, update_w_avg: bool = False):
        """The mapping in the dtype of z, without the input checks and the fp32 guard of `forward`
        (c: validated class ids or None). For shape-only runs and float64 measurements."""
        cfg = self.cfg
        x = normalize_2nd_moment(z)
        if c is not None:
            y = normalize_2nd_moment(self.embed_proj(self.embed(c)))
            x = torch.cat([x, y], dim=1)
        for fc in self.fcs:
            x = fc(x)                                                  # [B, w_dim]
        if update_w_avg:
            self._update_w_avg(x.detach(), c)
        if psi != 1:
            avg = self.w_avg[c] if c is not None else self.w_avg.expand_as(x)
            x = avg.lerp(x, psi)
        return x.unsqueeze(1).repeat(1, cfg.levels, 1)                 # [B, L, w_dim]

    @torch.no_grad()
    def _update_w_avg(self, w: torch.Tensor, c: torch.Tensor | None) -> None:
        """Running mean of w. Unconditional: decay beta per batch (as StyleGAN). Conditional: decay beta
        per sample, i.e. the k samples of a class in a batch move its mean by their batch mean with
        weight 1 - beta^k. Under torch.distributed the batch is the global one (sums and counts are
        all-reduced), so every rank stays identical."""
        beta = self.cfg.w_avg_beta
        C = max(self.cfg.num_classes, 1)
        idx = c if c is not None else torch.zeros(len(w), dtype=torch.long, device=w.device)
        stats = torch.zeros(C, self.cfg.w_dim + 1, device=w.device, dtype=w.dtype)
        stats.index_add_(0, idx, torch.cat([w, torch.ones_like(w[:, :1])], 1))   # [C, w_dim + 1]: sums, count
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(stats)
        sums, counts = stats[:, :-1], stats[:, -1]
        avg = self.w_avg.view(C, -1)
        present = counts > 0
        mean = sums[present] / counts[present, None]
        keep = beta ** counts[present, None] if c is not None else beta
        avg[present] = mean.lerp(avg[present], keep)


class Level(nn.Module):
    """One level's per-sample heads: w_i -> A_i [B, 3, n] (rows a, b, c) and M_i, t_i (warp)."""

    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        n = cfg.width
        head_in = cfg.w_dim
        if index > 0 and cfg.style_fc:
            self.style = FC(cfg.w_dim, n, act="lrelu")
            head_in = n
        self.affine = nn.Linear(head_in, 3 * n)        # A_i: a, b, c
        self.warp = nn.Linear(head_in, 6) if cfg.warp else None   # M_i (2x2) and t_i (2)
        self.linear = nn.Linear(n, n)                  # W_i, shared by all samples
        self.index = index

    def heads(self, w: torch.Tensor):
        s = self.style(w) if hasattr(self, "style") else w               # [B, head_in]
        A = self.affine(s).view(-1, 3, self.linear.in_features)          # [B, 3, n]
        if self.warp is None:
            return A, None, None
        mt = self.warp(s)
        return A, mt[:, :4].view(-1, 2, 2), mt[:, 4:].view(-1, 1, 2)      # M [B, 2, 2], t [B, 1, 2]


class Synthesis(SynthesisBase):
    """ws [B, L, w_dim] and coordinates [P, 2] or [B, P, 2] -> rgb [B, P, 3]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.levels = nn.ModuleList(Level(cfg, i) for i in range(cfg.levels))
        self.to_rgb = nn.Linear(cfg.width, cfg.img_channels)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialisation (a design choice; the release uses PyTorch's default nn.Linear init):
        - A_i heads: small weights (std 0.25 per unit input); biases a, b ~ N(0, coord_init^2) give
          spatial variation from the start; c = 1 at levels >= 1, so A_i X starts near 1 (an
          unmodulated layer, the StyleGAN special case) and c = 0 at level 0, whose input is A_0 X;
        - W_i: He init for LeakyReLU(slope), divided by the rms of A_i X over the unit square
          (E[g^2] = c^2 + 2/3 coord_init^2), so the features keep unit scale through the levels;
        - warp heads: zero weights, bias = identity matrix and zero translation.
        """
        cfg = self.cfg
        n = cfg.width
        gain = math.sqrt(2.0 / (1.0 + cfg.slope ** 2))
        for lvl in self.levels:
            c0 = 0.0 if lvl.index == 0 else 1.0
            g_rms = math.sqrt(c0 ** 2 + 2.0 / 3.0 * cfg.coord_init ** 2 + 3 * 0.25 ** 2)
            nn.init.normal_(lvl.linear.weight, std=gain / math.sqrt(n) / g_rms)
            nn.init.zeros_(lvl.linear.bias)
            nn.init.normal_(lvl.affine.weight, std=0.25 / math.sqrt(lvl.affine.in_features))
            b = lvl.affine.bias.view(3, n)
            nn.init.normal_(b[:2], std=cfg.coord_init)
            b[2].fill_(c0)
            if lvl.warp is not None:
                nn.init.zeros_(lvl.warp.weight)
                lvl.warp.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
        nn.init.normal_(self.to_rgb.weight, std=0.5 / math.sqrt(n))
        nn.init.zeros_(self.to_rgb.bias)

    def head_parameters(self) -> list[nn.Parameter]:
        """The per-level heads A_i, M_i, t_i: they scale every feature multiplicatively."""
        return [p for lvl in self.levels for m in (lvl.affine, lvl.warp) if m is not None for p in m.parameters()]

    def styles(self, ws: torch.Tensor) -> torch.Tensor:
        """Per-sample coordinate maps of every level, computed once per latent (not per pixel):
        A [B, L, 3, n] with rows (a, b, c), so that A_i X = x a_i + y b_i + c_i on the input grid.
        The cumulative warp G_i = G_{i-1} M_i + t_i is affine in the input coordinates, so it is
        folded into A here: G_i = G_0 Mc_i + tc_i and G_i [a; b] + c = G_0 (Mc_i [a; b]) + (tc_i [a; b] + c)."""
        self.check_ws(ws)
        As = []
        Mc = tc = None
        for i, lvl in enumerate(self.levels):
            A, M, t = lvl.heads(ws[:, i])                              # [B, 3, n], [B, 2, 2], [B, 1, 2]
            if M is not None:
                Mc = M if Mc is None else Mc @ M                       # cumulative warp [B, 2, 2]
                tc = t if tc is None else torch.baddbmm(t, tc, M)      # [B, 1, 2]
                ab = A[:, :2]                                          # [B, 2, n]
                A = torch.cat([Mc @ ab, torch.baddbmm(A[:, 2:], tc, ab)], dim=1)
            As.append(A)
        return torch.stack(As, 1)                                      # [B, L, 3, n]

    def evaluate(self, A: torch.Tensor, coords: torch.Tensor, return_levels: bool = False):
        """Evaluate the network at coords [P, 2] or [B, P, 2] for precomputed A = styles(ws)."""
        cfg = self.cfg
        B = A.shape[0]
        P = coords.shape[-2]
        X = torch.cat([coords.to(A.dtype), coords.new_ones(coords.shape[:-1] + (1,), dtype=A.dtype)], -1)
        X = X.expand(B, P, 3).contiguous()                             # X = [x, y, 1]   [B, P, 3]
        inplace = not torch.is_grad_enabled() and not return_levels
        clamp, slope = cfg.clamp, cfg.slope
        feats, affs = [], []
        h = None
        for i, lvl in enumerate(self.levels):
            g = torch.bmm(X, A[:, i])                                  # A_i X   [B, P, n]
            if return_levels:
                affs.append(g)
            if h is None:
                x = g                                                  # level 0: W_0 (A_0 X)
            else:
                if cfg.coord_act and slope != 1:
                    g = F.leaky_relu(g, slope, inplace=inplace)
                x = h.mul_(g) if inplace else h * g                    # (A_i X) * h_{i-1}
            h = F.linear(x, lvl.linear.weight, lvl.linear.bias)        # W_i (.)   [B, P, n]
            if slope != 1:
                h = F.leaky_relu(h, slope, inplace=True)
            if clamp is not None:   # hardtanh == clamp, with a single-pass backward kernel
                h = F.hardtanh(h, -clamp, clamp, inplace=inplace)
            if return_levels:
                feats.append(h)
        rgb = self.to_rgb(h)                                           # [B, P, 3]
        if return_levels:
            return rgb, {"features": feats, "affine": affs}
        return rgb

    def forward(self, ws: torch.Tensor, coords: torch.Tensor, return_levels: bool = False):
        """rgb [B, P, 3] at coords [P, 2] or [B, P, 2]; with return_levels also
        {"features": [h_i], "affine": [A_i X]}, each a list of L tensors [B, P, n]."""
        coords = check_coords(coords, ws.shape[0] if isinstance(ws, torch.Tensor) else None)
        return self.evaluate(self.styles(ws), coords, return_levels=return_levels)


class Generator(nn.Module):
    """Mapping + synthesis. `G(z, c)` renders [B, 3, H, W] images on the [0, 1]^2 grid."""

    def __init__(self, cfg: ModelConfig, preset: str | None = None, dataset: str | None = None,
                 class_names: list[str] | None = None):
        super().__init__()
        self.cfg = cfg
        self.preset = preset
        self.dataset = dataset                  # what it was trained on ("letters", "emoji", a folder name, ...)
        self.class_names = list(class_names) if class_names else None   # display names of the classes
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SYNTHESES[cfg.arch](cfg)

    def forward(self, z, c=None, height: int | None = None, width: int | None = None, psi: float = 1.0,
                update_w_avg: bool = False) -> torch.Tensor:
        height = self.cfg.resolution if height is None else height
        width = height if width is None else width
        ws = self.mapping(z, c, psi=psi, update_w_avg=update_w_avg)
        return synthesize(self, ws, height, width)                     # [B, C, H, W]


SYNTHESES = {"polyinr": Synthesis, "conv": ConvSynthesis, "cips": CIPSSynthesis}


def build_generator(preset: str, **overrides) -> Generator:
    """Build a generator from a named preset (`PRESETS`) with field overrides."""
    return Generator(get_preset(preset, **overrides), preset=preset)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (every generator parameter is trainable; nothing frozen is stored)."""
    return sum(p.numel() for p in module.parameters())


def flops_per_pixel(cfg) -> int:
    """FLOPs (2 per multiply-add) of one pixel of a Poly-INR synthesis: per level the n x n product W_i (.)
    and the affine term A_i X (3n), plus the n -> C output layer. Element-wise work is not counted."""
    n = cfg.width
    return cfg.levels * (2 * n * n + 2 * 3 * n) + 2 * n * cfg.img_channels


def matched_config(cfg: ModelConfig, arch: str) -> ModelConfig:
    """`cfg` with generator family `arch` and the width whose total parameter count is closest to
    cfg's (same mapping network, classes and channels; conv: its 2 log2(R) - 3 style inputs, cips:
    cfg.levels layers). Counted on the meta device, so nothing is allocated."""
    with torch.device("meta"):
        target = count_parameters(Generator(cfg))
    levels = conv_levels(cfg.resolution) if arch == "conv" else cfg.levels

    def count(width: int) -> int:
        with torch.device("meta"):
            return count_parameters(Generator(dataclasses.replace(cfg, arch=arch, levels=levels, width=width)))
    lo, hi = 1, 2 * cfg.width + 64
    while count(hi) < target:
        hi *= 2
    while hi - lo > 1:                              # the count grows with the width
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    width = min((lo, hi), key=lambda w: abs(count(w) - target))
    return dataclasses.replace(cfg, arch=arch, levels=levels, width=width)
