"""Small plotting helpers shared by the notebooks (images live in [-1, 1], [B, C, H, W])."""
from __future__ import annotations

import numpy as np
import torch


def to_display(img: torch.Tensor, normalize: bool = False) -> np.ndarray:
    """[C, H, W] in [-1, 1] (or any range with normalize=True) -> [H, W, C] float in [0, 1]."""
    x = img.detach().float().cpu()
    if normalize:
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
    else:
        x = (x + 1) / 2
    x = x.clamp(0, 1).permute(1, 2, 0).numpy()
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
    from PIL import Image
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
    """Loss curves and throughput from stats.jsonl records; returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
    kimg = [s["kimg"] for s in stats]
    for k in keys:
        if stats and k in stats[0]:
            ax.plot(kimg, [s[k] for s in stats], "o-", label=k, markersize=3)
    ax.set_xlabel("kimg"), ax.set_ylabel("loss (mean over the tick)"), ax.legend(), ax.grid(alpha=0.3)
    ax2.plot(kimg, [s["img_per_s"] for s in stats], "o-", markersize=3)
    ax2.set_xlabel("kimg"), ax2.set_ylabel("images / s"), ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def show_png(path, title: str | None = None, scale: float = 1.0):
    """Display a PNG (e.g. a sample grid) in a notebook at its pixel size times `scale`."""
    import matplotlib.pyplot as plt
    from PIL import Image
    im = Image.open(path)
    fig = plt.figure(figsize=(im.width * scale / 100, im.height * scale / 100 + (0.3 if title else 0)), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1 if not title else 0.92])
    ax.imshow(im, interpolation="nearest", cmap="gray")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
