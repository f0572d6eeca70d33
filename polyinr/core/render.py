"""Images from latents: `synthesize` (differentiable, one pass) and `render` (inference, chunked).

Every pixel is synthesised independently, so rendering in pixel chunks gives the full image in
bounded memory; the per-latent heads are computed once and reused for every chunk. Coordinates
come from `grid` (the paper's CoordinateGrid on any extent).
"""
from __future__ import annotations

import torch

from .grid import UNIT, Extent, check_coords, check_extent, check_size, coordinate_grid, grid_rows


def synthesize(G, ws: torch.Tensor, height: int, width: int, extent: Extent = UNIT) -> torch.Tensor:
    """Images of ws [B, L, w_dim] on a height x width grid spanning `extent` -> [B, C, H, W], in one
    differentiable pass (for losses, inversion and training; `render` is the chunked, inference-only
    twin and gives the same values)."""
    height, width = check_size("height", height), check_size("width", width)
    coords = coordinate_grid(height, width, extent, device=ws.device)                 # [P, 2]
    return as_image(G.synthesis(ws, coords), height, width)


def as_image(rgb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel values of a row-major grid [B, P, C] (P = H * W) -> images [B, C, H, W]."""
    return rgb.transpose(1, 2).reshape(rgb.shape[0], -1, height, width)


def default_chunk(width: int, device="cpu") -> int:
    """Rows (latent x pixel) per chunk. CPU: one [rows, n] fp32 feature map of about 8 MB, small
    enough to stay in the last-level cache during the element-wise passes of a level. GPU: about
    1 GB per feature map, large enough to keep the device busy."""
    budget = (1 << 30) if torch.device(device).type == "cuda" else (8 << 20)
    return max(1024, budget // (4 * width))


def pixel_blocks(B: int, P: int, chunk: int):
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
    chunk = default_chunk(synth.cfg.width, ws.device) if chunk_pixels is None else check_size("chunk_pixels", chunk_pixels)
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype: expected None, torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}")
    low = dtype not in (None, torch.float32)
    B = ws.shape[0]
    out = torch.empty(B, synth.cfg.img_channels, P, device=ws.device)
    with torch.autocast(ws.device.type, dtype=dtype if low else torch.bfloat16, enabled=low):
        A = synth.styles(ws)                                            # [B, L, 3, n]
        for b0, b1, p0, p1 in pixel_blocks(B, P, chunk):
            out[b0:b1, :, p0:p1] = synth.evaluate(A[b0:b1], rows_fn(p0, p1)).transpose(1, 2)
    return out


@torch.inference_mode()
def render_coords(G, ws: torch.Tensor, coords: torch.Tensor, chunk_pixels: int | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Render ws [B, L, w_dim] at coords [P, 2] -> rgb [B, P, 3] (float32), in chunks of at most
    `chunk_pixels` (latent x pixel) rows; `dtype=torch.bfloat16` computes under autocast."""
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
    height, width = check_size("height", height), check_size("width", width)
    extent = check_extent(extent)
    rows = lambda p0, p1: grid_rows(p0, p1, height, width, extent, ws.device)  # noqa: E731
    out = _render_rows(G, ws, height * width, rows, chunk_pixels, dtype)             # [B, 3, P]
    return out.view(ws.shape[0], -1, height, width)                            # [B, 3, H, W]
