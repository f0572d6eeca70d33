"""Coordinates: the paper's CoordinateGrid and the extents and pixel grids built on it.

CoordinateGrid(H, W) = {(x / (W - 1), y / (H - 1))}, endpoints included, row-major, x along the
columns and y along the rows; `extent` maps the same index grid onto any rectangle, e.g.
[-0.25, 1.25]^2 for extrapolation, or `pixel_center_extent` for a denser grid whose pixels subdivide
the training grid's pixel areas.
"""
from __future__ import annotations

import math

import torch

Extent = tuple[tuple[float, float], tuple[float, float]]
UNIT: Extent = ((0.0, 1.0), (0.0, 1.0))


def check_size(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return v


def check_extent(extent) -> Extent:
    try:
        (x0, x1), (y0, y1) = extent
        vals = [float(x0), float(x1), float(y0), float(y1)]
    except (TypeError, ValueError):
        raise ValueError(f"extent: expected ((x_min, x_max), (y_min, y_max)), got {extent!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"extent: values must be finite, got {extent!r}")
    return (vals[0], vals[1]), (vals[2], vals[3])


def _axis(idx: torch.Tensor, n: int, lo: float, hi: float) -> torch.Tensor:
    if n == 1:
        return torch.full(idx.shape, lo, dtype=torch.float32, device=idx.device)
    return lo + (hi - lo) * (idx.to(torch.float32) / (n - 1))


def grid_rows(start: int, stop: int, height: int, width: int, extent: Extent, device=None) -> torch.Tensor:
    """Rows [start, stop) of the row-major flattened grid: [stop - start, 2] as (x, y)."""
    idx = torch.arange(start, stop, device=device)
    (x0, x1), (y0, y1) = extent
    return torch.stack([_axis(idx % width, width, x0, x1), _axis(idx // width, height, y0, y1)], dim=1)


def coordinate_grid(height: int, width: int, extent: Extent = UNIT, device=None) -> torch.Tensor:
    """[H * W, 2] coordinates (x, y), row-major (pixel (r, c) is row r * W + c); x spans
    extent[0] over the columns and y spans extent[1] over the rows, endpoints included."""
    height, width = check_size("height", height), check_size("width", width)
    return grid_rows(0, height * width, height, width, check_extent(extent), device)


def pixel_grid(height: int, width: int, rows: tuple[int, int], cols: tuple[int, int], device=None) -> torch.Tensor:
    """Coordinates of integer pixel indices of the (height x width) grid on [0, 1]^2, including
    indices outside it: pixel (r, c) sits at (c / (W - 1), r / (H - 1)). Rows r0 <= r < r1 and
    columns c0 <= c < c1, row-major. In-frame pixels get bit-identical coordinates to
    `coordinate_grid(height, width)`, which makes extrapolation and crops exactly comparable."""
    height, width = check_size("height", height), check_size("width", width)
    r = torch.arange(rows[0], rows[1], device=device)
    c = torch.arange(cols[0], cols[1], device=device)
    if len(r) == 0 or len(c) == 0:
        raise ValueError(f"rows/cols: empty range rows={rows}, cols={cols}")
    y = r.to(torch.float32) / max(height - 1, 1)
    x = c.to(torch.float32) / max(width - 1, 1)
    return torch.stack([x.repeat(len(r)), y.repeat_interleave(len(c))], dim=1)


def pixel_center_extent(base: int, factor: float) -> Extent:
    """Extent of a (factor * base)-pixel grid whose pixels subdivide the pixel areas of the base grid.

    The base grid puts pixel j at u = j / (base - 1) (endpoints included); as an image, pixel j covers
    [j - 1/2, j + 1/2] in base pixel units. The k-times finer pixels tiling the same areas have centres
    u = ((m + 1/2) / k - 1/2) / (base - 1), m = 0 .. k base - 1, so the extent reaches half a base pixel
    minus half a fine pixel beyond [0, 1] (spacing exactly 1 / (k (base - 1))). factor = 1 gives
    [0, 1]. This is the geometry of real images (area pixels) and of `F.interpolate(...,
    align_corners=False)`."""
    if isinstance(base, bool) or not isinstance(base, int) or base < 2:
        raise ValueError(f"base: expected an integer resolution >= 2, got {base!r}")
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor: expected a positive number, got {factor!r}")
    lo = (0.5 / factor - 0.5) / (base - 1)
    return (lo, 1 - lo), (lo, 1 - lo)


def check_coords(coords, batch: int | None = None) -> torch.Tensor:
    if not isinstance(coords, torch.Tensor):
        raise ValueError(f"coords: expected a tensor of shape [P, 2] or [B, P, 2], got {type(coords).__name__}")
    ok = coords.dim() in (2, 3) and coords.shape[-1] == 2 and coords.dtype.is_floating_point
    if ok and coords.dim() == 3 and batch is not None and coords.shape[0] not in (1, batch):
        ok = False
    if not ok:
        raise ValueError(f"coords: expected a float tensor of shape [P, 2] or [{batch or 'B'}, P, 2] "
                         f"(x, y per pixel), got {coords.dtype} {list(coords.shape)}")
    if coords.shape[-2] == 0:
        raise ValueError(f"coords: expected at least one coordinate, got {list(coords.shape)} (P = 0)")
    if not coords.is_meta and not torch.isfinite(coords).all():
        raise ValueError("coords: contains NaN or infinite values")
    return coords
