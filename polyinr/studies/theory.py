"""Numerical checks of the paper's structural claims (section 3).

- Degree growth: with identity activations (slope 1, no clamp) the L-level network is a
  polynomial of degree <= L in (x, y); restricted to any line it is a univariate polynomial, so its
  finite differences of order L + 1 vanish. A level with a = b = 0 multiplies by a constant and
  does not raise the degree.
- StyleGAN special case: with a_i = b_i = 0, (A_i X) = c_i is constant over the image and
  W_i (c_i * h) = (W_i diag(c_i)) h, i.e. StyleGAN2 weight modulation without demodulation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def finite_differences(values: torch.Tensor, max_order: int) -> list[torch.Tensor]:
    """Forward differences along dim 0: [Delta^0 f, Delta^1 f, ..., Delta^max_order f] at t = 0."""
    out, d = [], values
    for _ in range(max_order + 1):
        out.append(d[0])
        d = d[1:] - d[:-1]
    return out


def line_coords(start=(0.1, 0.2), direction=(0.6, 0.45), steps: int = 12, dtype=torch.float64) -> torch.Tensor:
    """`steps` equally spaced points start + k * direction / (steps - 1): [steps, 2]."""
    t = torch.arange(steps, dtype=dtype)[:, None] / (steps - 1)
    return torch.tensor(start, dtype=dtype) + t * torch.tensor(direction, dtype=dtype)


@torch.no_grad()
def difference_profile(G, ws: torch.Tensor, A: torch.Tensor | None = None, max_order: int | None = None,
                       coords: torch.Tensor | None = None) -> list[float]:
    """max |Delta^k rgb| along a line for k = 0..max_order (default L + 1), in the dtype of G.
    For a pure-polynomial model the entry L + 1 is at rounding level while L is not."""
    synth = G.synthesis
    max_order = synth.cfg.levels + 1 if max_order is None else max_order
    dtype = next(G.parameters()).dtype
    coords = line_coords(steps=max_order + 1, dtype=dtype) if coords is None else coords
    A = synth.styles(ws.to(dtype)) if A is None else A
    rgb = synth.evaluate(A, coords)                                  # [B, P, 3]
    diffs = finite_differences(rgb.transpose(0, 1), max_order)       # each [B, 3]
    return [d.abs().max().item() for d in diffs]


def zero_coordinate_terms(A: torch.Tensor, levels) -> torch.Tensor:
    """A copy of A [B, L, 3, n] with a = b = 0 at the given levels (only c remains)."""
    A = A.clone()
    A[:, list(levels), :2] = 0
    return A


@torch.no_grad()
def stylegan_special_case(G, ws: torch.Tensor, coords: torch.Tensor, level: int) -> dict:
    """Run the real synthesis with a = b = 0 at `level` >= 1 and compare its output features with
    StyleGAN2-style modulation of the previous level's features: act(h (W diag(phi(c)))^T + bias).
    Returns the max abs difference and the scale of the features."""
    synth = G.synthesis
    cfg = synth.cfg
    if not 1 <= level < cfg.levels:
        raise ValueError(f"level: expected 1..{cfg.levels - 1}, got {level}")
    A = zero_coordinate_terms(synth.styles(ws), [level])
    _, lv = synth.evaluate(A, coords, return_levels=True)
    h_prev, h = lv["features"][level - 1], lv["features"][level]     # [B, P, n]
    c = A[:, level, 2]                                               # [B, n]
    if cfg.coord_act and cfg.slope != 1:
        c = F.leaky_relu(c, cfg.slope)
    lin = synth.levels[level].linear
    W_mod = lin.weight[None] * c[:, None, :]                         # W diag(c)   [B, n, n]
    ref = torch.baddbmm(lin.bias[None, None], h_prev, W_mod.transpose(1, 2))
    if cfg.slope != 1:
        ref = F.leaky_relu(ref, cfg.slope)
    if cfg.clamp is not None:
        ref = ref.clamp(-cfg.clamp, cfg.clamp)
    return {"max_abs_diff": (ref - h).abs().max().item(), "feature_scale": h.abs().max().item(),
            "constant_over_image": bool(torch.all(lv["affine"][level] == lv["affine"][level][:, :1]))}


def polynomial_degree(profile: list[float], rel_tol: float = 1e-7) -> int:
    """The smallest k whose difference Delta^k (and every higher one in the profile) is below
    rel_tol times the largest difference, minus one: the degree read off a difference profile."""
    scale = max(profile)
    for k in range(len(profile)):
        if all(v <= rel_tol * scale for v in profile[k:]):
            return k - 1
    return len(profile)  # not reached within the profile: degree >= len(profile)


def degree_bound(levels: int, flat_levels=()) -> int:
    """Degree bound of the pure form: each level adds one unless its a = b = 0."""
    return levels - len(set(flat_levels))


__all__ = ["finite_differences", "line_coords", "difference_profile", "zero_coordinate_terms",
           "stylegan_special_case", "polynomial_degree", "degree_bound"]
