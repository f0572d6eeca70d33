"""Coordinate grids and chunked rendering.

The paper's CoordinateGrid(H, W) = {(x / (W - 1), y / (H - 1))} with endpoints included;
`extent` maps the same index grid onto any rectangle, e.g. [-0.25, 1.25]^2 for extrapolation.
Every pixel is synthesised independently, so rendering in pixel chunks gives the full image in
bounded memory; the per-latent heads are computed once and reused for every chunk.
"""
from __future__ import annotations

import math

import torch

Extent = tuple[tuple[float, float], tuple[float, float]]
UNIT: Extent = ((0.0, 1.0), (0.0, 1.0))


def _check_size(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return v


def _check_extent(extent) -> Extent:
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


def _grid_rows(start: int, stop: int, height: int, width: int, extent: Extent, device=None) -> torch.Tensor:
    """Rows [start, stop) of the row-major flattened grid: [stop - start, 2] as (x, y)."""
    idx = torch.arange(start, stop, device=device)
    (x0, x1), (y0, y1) = extent
    return torch.stack([_axis(idx % width, width, x0, x1), _axis(idx // width, height, y0, y1)], dim=1)


def coordinate_grid(height: int, width: int, extent: Extent = UNIT, device=None) -> torch.Tensor:
    """[H * W, 2] coordinates (x, y), row-major (pixel (r, c) is row r * W + c); x spans
    extent[0] over the columns and y spans extent[1] over the rows, endpoints included."""
    height, width = _check_size("height", height), _check_size("width", width)
    return _grid_rows(0, height * width, height, width, _check_extent(extent), device)


def pixel_grid(height: int, width: int, rows: tuple[int, int], cols: tuple[int, int], device=None) -> torch.Tensor:
    """Coordinates of integer pixel indices of the (height x width) grid on [0, 1]^2, including
    indices outside it: pixel (r, c) sits at (c / (W - 1), r / (H - 1)). Rows r0 <= r < r1 and
    columns c0 <= c < c1, row-major. In-frame pixels get bit-identical coordinates to
    `coordinate_grid(height, width)`, which makes extrapolation and crops exactly comparable."""
    height, width = _check_size("height", height), _check_size("width", width)
    r = torch.arange(rows[0], rows[1], device=device)
    c = torch.arange(cols[0], cols[1], device=device)
    if len(r) == 0 or len(c) == 0:
        raise ValueError(f"rows/cols: empty range rows={rows}, cols={cols}")
    y = r.to(torch.float32) / max(height - 1, 1)
    x = c.to(torch.float32) / max(width - 1, 1)
    return torch.stack([x.repeat(len(r)), y.repeat_interleave(len(c))], dim=1)


def default_chunk(width: int, device="cpu") -> int:
    """Rows (latent x pixel) per chunk. CPU: one [rows, n] fp32 feature map of about 8 MB, small
    enough to stay in the last-level cache during the element-wise passes of a level. GPU: about
    1 GB per feature map, large enough to keep the device busy."""
    budget = (1 << 30) if torch.device(device).type == "cuda" else (8 << 20)
    return max(1024, budget // (4 * width))


def _blocks(B: int, P: int, chunk: int):
    """Split B latents x P pixels into blocks of at most `chunk` rows."""
    if P >= chunk:
        for b in range(B):
            for p in range(0, P, chunk):
                yield b, b + 1, p, min(p + chunk, P)
    else:
        bb = max(1, chunk // P)
        for b in range(0, B, bb):
            yield b, min(b + bb, B), 0, P


def _render_rows(G, ws: torch.Tensor, P: int, rows_fn, chunk_pixels: int | None, dtype) -> torch.Tensor:
    """rgb [B, 3, P] with the coordinates of rows [p0, p1) given by rows_fn(p0, p1)."""
    synth = G.synthesis
    synth.check_ws(ws)
    chunk = default_chunk(synth.cfg.width, ws.device) if chunk_pixels is None else _check_size("chunk_pixels", chunk_pixels)
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype: expected None, torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}")
    low = dtype not in (None, torch.float32)
    B = ws.shape[0]
    out = torch.empty(B, synth.cfg.img_channels, P, device=ws.device)
    with torch.autocast(ws.device.type, dtype=dtype if low else torch.bfloat16, enabled=low):
        A = synth.styles(ws)                                            # [B, L, 3, n]
        for b0, b1, p0, p1 in _blocks(B, P, chunk):
            out[b0:b1, :, p0:p1] = synth.evaluate(A[b0:b1], rows_fn(p0, p1)).transpose(1, 2)
    return out


@torch.inference_mode()
def render_coords(G, ws: torch.Tensor, coords: torch.Tensor, chunk_pixels: int | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Render ws [B, L, w_dim] at coords [P, 2] -> rgb [B, P, 3] (float32), in chunks of at most
    `chunk_pixels` (latent x pixel) rows; `dtype=torch.bfloat16` computes under autocast."""
    from .model import check_coords
    coords = check_coords(coords)
    if coords.dim() != 2:
        raise ValueError(f"coords: render_coords takes one shared grid [P, 2], got {list(coords.shape)}")
    return _render_rows(G, ws, coords.shape[0], lambda p0, p1: coords[p0:p1], chunk_pixels, dtype).transpose(1, 2)


@torch.inference_mode()
def render(G, ws: torch.Tensor, height: int, width: int, extent: Extent = UNIT,
           chunk_pixels: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Render ws [B, L, w_dim] on a height x width grid spanning `extent` -> [B, 3, H, W] (float32).
    Coordinates are generated per chunk, so memory beyond the output stays bounded; the network
    runs in chunks of at most `chunk_pixels` (latent x pixel) rows, under autocast for bf16/fp16."""
    height, width = _check_size("height", height), _check_size("width", width)
    extent = _check_extent(extent)
    rows = lambda p0, p1: _grid_rows(p0, p1, height, width, extent, ws.device)  # noqa: E731
    out = _render_rows(G, ws, height * width, rows, chunk_pixels, dtype)             # [B, 3, P]
    return out.view(ws.shape[0], -1, height, width)                            # [B, 3, H, W]
