"""Image quality against a reference: PSNR and SSIM of images in [0, data_range] (use
`polyinr.core.images.to_unit` for images in [-1, 1])."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per item [B] of x, y [B, ...] (images [B, C, H, W], or pixel sets
    [B, P, C]) in [0, data_range]: 10 log10(range^2 / MSE), inf for identical items. No gradients."""
    if x.shape != y.shape or x.dim() < 2:
        raise ValueError(f"y: expected the shape of x {list(x.shape)} ([B, ...]), got {list(y.shape)}")
    mse = (x.detach().double() - y.detach().double()).square().flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / mse)).float()


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian window [size]."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-r.square() / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image [B] of [B, C, H, W] images in [0, data_range]:
    Gaussian window (11, sigma 1.5), K1 0.01, K2 0.03, local statistics with the window's weights
    (biased variances), averaged over the positions where the window fits inside the image ('valid')
    and over channels. Equals `skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)`. NaN for images smaller than the window.
    No gradients."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"y: expected the shape of x {list(x.shape)} ([B, C, H, W]), got {list(y.shape)}")
    if min(x.shape[-2:]) < window:
        return torch.full((x.shape[0],), float("nan"))
    x, y = x.detach(), y.detach()
    B, C = x.shape[:2]
    g = gaussian_window(window, sigma)
    x, y = x.double().flatten(0, 1)[:, None], y.double().flatten(0, 1)[:, None]   # [B C, 1, H, W]

    def blur(t):                                                           # separable 'valid' filter
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        return F.conv2d(t, g.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean((1, 2, 3)).view(B, C).mean(1).float()
