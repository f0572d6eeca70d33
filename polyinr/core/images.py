"""Images as tensors: the uint8 <-> [-1, 1] conversions, bicubic upsampling, image grids and the
plotting helpers of the notebooks. Images live in [-1, 1] as float [B, C, H, W]; data and files
hold uint8 0..255 (StyleGAN's convention: x = u / 127.5 - 1, u = clamp(x * 127.5 + 128)).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_float(images_u8: torch.Tensor, device=None) -> torch.Tensor:
    """uint8 [..] in 0..255 -> float in [-1, 1] (on `device`, when given)."""
    return images_u8.to(device, non_blocking=True).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 0..255, rounded to nearest (values outside clip)."""
    return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> [0, 1] (clamped), for PSNR / SSIM and display."""
    return (img.clamp(-1, 1) + 1) / 2


def upsample(img: torch.Tensor, factor: int, clamp: tuple[float, float] | None = (-1.0, 1.0),
             align_corners: bool = False) -> torch.Tensor:
    """Bicubic upsampling by an integer factor, [B, C, H, W] -> [B, C, kH, kW]. The default is the
    area-pixel geometry of real images (align_corners=False; matches `pixel_center_extent`), clamped
    to the image range since bicubic overshoots at edges (clamp=None keeps the raw values)."""
    out = F.interpolate(img, scale_factor=factor, mode="bicubic", align_corners=align_corners)
    return out if clamp is None else out.clamp(*clamp)


def to_display(img: torch.Tensor, normalize: bool = False) -> np.ndarray:
    """[C, H, W] in [-1, 1] (or any range with normalize=True) -> [H, W, C] float in [0, 1]."""
    x = img.detach().float().cpu()
    if normalize:
        lo, hi = x.min(), x.max()
        x = ((x - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    else:
        x = to_unit(x)
    x = x.permute(1, 2, 0).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def image_grid(images: torch.Tensor, nrow: int, pad: int = 1, normalize: bool = False) -> np.ndarray:
    """[B, C, H, W] -> one [rows*(H+pad), nrow*(W+pad), C] array in [0, 1] (white padding)."""
    B, C, H, W = images.shape
    ncol = nrow
    rows = (B + ncol - 1) // ncol
    grid = np.ones((rows * (H + pad) - pad, ncol * (W + pad) - pad, 3), dtype=np.float32)
    for i in range(B):
        r, c = divmod(i, ncol)
        tile = to_display(images[i], normalize)
        if tile.ndim == 2:
            tile = np.repeat(tile[..., None], 3, axis=-1)
        grid[r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = tile
    return grid


def save_grid(images: torch.Tensor, path, nrow: int, normalize: bool = False, scale: int = 1) -> None:
    """Write an image grid as PNG, optionally enlarged by an integer factor (nearest)."""
    grid = image_grid(images, nrow, normalize=normalize)
    im = Image.fromarray((grid * 255 + 0.5).astype(np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)


def show_row(axes, images, titles=None, normalize: bool = False) -> None:
    """Draw images [B, C, H, W] into a row of matplotlib axes."""
    for i, ax in enumerate(axes):
        ax.imshow(to_display(images[i], normalize), cmap="gray" if images.shape[1] == 1 else None,
                  interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)


def plot_training_stats(stats: list[dict], keys=("d_loss", "d_real", "d_fake", "g_loss")):
    """Loss curves, the in-training quality scores when the run has them (letters-FD on a log axis;
    precision, recall and class consistency on [0, 1]) and throughput from stats.jsonl records;
    returns the matplotlib figure."""
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import
    scored = [s for s in stats if "fd_letters" in s]
    fig, axes = plt.subplots(1, 3 if scored else 2, figsize=(16 if scored else 11, 3.5))
    ax, ax2 = axes[0], axes[-1]
    kimg = [s["kimg"] for s in stats]
    for k in keys:
        if stats and k in stats[0]:
            ax.plot(kimg, [s[k] for s in stats], "o-", label=k, markersize=3)
    ax.set_xlabel("kimg"), ax.set_ylabel("loss (mean over the tick)"), ax.legend(), ax.grid(alpha=0.3)
    if scored:
        q, qk = axes[1], [s["kimg"] for s in scored]
        q.semilogy(qk, [s["fd_letters"] for s in scored], "ko-", markersize=3, label="letters-FD (left)")
        q.set_xlabel("kimg"), q.set_ylabel("letters-FD"), q.grid(alpha=0.3)
        r = q.twinx()
        for k, style in (("precision_letters", "o-"), ("recall_letters", "s-"), ("class_consistency_letters", "^-")):
            if k in scored[0]:
                r.plot(qk, [s[k] for s in scored], style, markersize=3, label=k.replace("_letters", ""))
        r.set_ylim(0, 1), r.set_ylabel("precision / recall / consistency")
        lines = q.get_legend_handles_labels()[0] + r.get_legend_handles_labels()[0]
        r.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="center right")
        q.set_title("quality of the EMA generator on fixed latents", fontsize=9)
    ax2.plot(kimg, [s["img_per_s"] for s in stats], "o-", markersize=3)
    ax2.set_xlabel("kimg"), ax2.set_ylabel("images / s"), ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def show_png(path, title: str | None = None, scale: float = 1.0):
    """Display a PNG (e.g. a sample grid) in a notebook at its pixel size times `scale`."""
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import
    im = Image.open(path)
    fig = plt.figure(figsize=(im.width * scale / 100, im.height * scale / 100 + (0.3 if title else 0)), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1 if not title else 0.92])
    ax.imshow(im, interpolation="nearest", cmap="gray")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
