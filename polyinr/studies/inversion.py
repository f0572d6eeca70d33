"""GAN inversion: embed real images in the latent space of a Poly-INR generator (paper section 4:
PSNR / SSIM 26.52 / 0.76 on ImageNet, against 13.5 / 0.33 for StyleGAN-XL).

Recipe (StyleGAN-XL's projector, which the paper's release points to; StyleGAN2's schedule):
- start from the class mean w (`G.mapping.w_avg[c]`) and optimise either one w per image shared by
  every level (`mode="w"`, the space W) or one w per level (`mode="w+"`, W+);
- Adam (betas 0.9, 0.999), learning rate `lr` = 0.1 times a ramp: linear ramp-up over the first
  `ramp_up` = 5 % of the steps, cosine ramp-down over the last `ramp_down` = 25 % (`lr_schedule`);
- Gaussian noise on w during the first 75 % of the steps, of scale 0.05 * std(w) decaying
  quadratically to 0 (`noise_schedule`), which keeps the search away from poor local minima;
- loss = pixel MSE + a perceptual distance. The perceptual term uses a frozen pretrained timm
  backbone (LPIPS-style: channel-normalised features, squared differences, averaged over space and
  summed over maps) when its weights can be had (`polyinr.training.backbones.FrozenTimm`: a local
  file or the timm cache); otherwise `loss="auto"` falls back to a multi-scale pixel + image-gradient
  loss (`multiscale_loss`). `InversionResult.loss_info` records which was used and why.

The generator is evaluated with autograd through `synthesize(G, ws, H, W)` on the target's own pixel
grid; all targets are optimised together in one batch (each target's loss only reaches its own code,
so batching does not couple them). `pivotal_tuning` (Roich et al. 2022) then fine-tunes a copy of the
synthesis network around the inverted codes, keeping the codes fixed.

Shape letters: B targets, C channels, H, W target size, L levels, P pixels.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..core.images import to_float, to_unit
from ..core.model import check_classes
from ..core.progress import progress_bar
from ..core.render import synthesize
from ..evaluation.quality import psnr, ssim
from ..training.backbones import BackboneWeightsError, FrozenTimm

MODES = ("w", "w+")
LOSSES = ("auto", "timm", "multiscale", "pixel")
INITS = ("class_mean", "sample_mean")
DEFAULT_BACKBONE = "tf_efficientnet_lite0"


# ------------------------------------------------------------------------------------------ schedules


def lr_schedule(step: int, steps: int, lr: float = 0.1, ramp_up: float = 0.05, ramp_down: float = 0.25) -> float:
    """Learning rate at `step` of `steps` (StyleGAN2 projector): with t = step / steps,
    lr * min(1, t / ramp_up) * (0.5 - 0.5 cos(pi * min(1, (1 - t) / ramp_down))).
    A ramp length of 0 switches that ramp off."""
    t = step / steps
    down = min(1.0, (1.0 - t) / ramp_down) if ramp_down > 0 else 1.0
    down = 0.5 - 0.5 * math.cos(math.pi * down)
    up = min(1.0, t / ramp_up) if ramp_up > 0 else 1.0
    return lr * down * up


def noise_schedule(step: int, steps: int, scale: float = 0.05, ramp: float = 0.75) -> float:
    """Factor of std(w) for the noise added to w at `step`: scale * max(0, 1 - t / ramp)^2."""
    if ramp <= 0 or scale == 0:
        return 0.0
    return scale * max(0.0, 1.0 - (step / steps) / ramp) ** 2


# ------------------------------------------------------------------------------------------- inputs


def _as_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float in [-1, 1]; float images are kept as they are."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected images [B, C, H, W] (float in [-1, 1] or uint8), got {got}")
    if x.dtype == torch.uint8:
        return to_float(x)
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name}: expected a float or uint8 tensor, got {x.dtype}")
    return x.float()


# ------------------------------------------------------------------------------------------- losses


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def multiscale_loss(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Per-image multi-scale pixel + image-gradient loss, [B, C, H, W] x 2 -> [B]: the sum over the
    scales 1, 1/2, 1/4, ... (2x2 average pooling, while the image is at least 4 px) of the MSE of the
    images plus the MSEs of their horizontal and vertical finite differences."""
    total = x.new_zeros(x.shape[0])
    for s in range(scales):
        if s > 0:
            if min(x.shape[-2:]) < 8:
                break
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        (xh, xv), (yh, yv) = _grad(x), _grad(y)
        total = total + (x - y).square().flatten(1).mean(1) \
            + (xh - yh).square().flatten(1).mean(1) + (xv - yv).square().flatten(1).mean(1)
    return total


class PerceptualDistance(nn.Module):
    """LPIPS-style distance on a frozen feature network without learned channel weights: each
    feature map is normalised to unit length over channels, and the squared differences are summed
    over channels, averaged over positions and summed over maps. `net` (a `FrozenTimm`) resizes the
    images in [-1, 1], repeats grey to 3 channels and normalises them."""

    def __init__(self, net: FrozenTimm):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.net(x), self.net(y)
        if isinstance(fx, torch.Tensor):
            fx, fy = [fx], [fy]
        total = x.new_zeros(x.shape[0])
        for a, b in zip(fx, fy):
            a = a / (a.square().sum(1, keepdim=True) + 1e-10).sqrt()
            b = b / (b.square().sum(1, keepdim=True) + 1e-10).sqrt()
            total = total + (a - b).square().sum(1).flatten(1).mean(1)
        return total


def timm_perceptual(backbone: str = DEFAULT_BACKBONE, backbone_weights=None, pretrained: bool = True,
                    size: int = 224) -> PerceptualDistance:
    """A `PerceptualDistance` on the feature maps of a timm model (features_only). The weights come
    from a local file (`backbone_weights`: folder or {name: path}), the timm cache / download, or
    random init with pretrained=False (tests only); offline without a file this raises
    `polyinr.training.backbones.BackboneWeightsError` with instructions."""
    return PerceptualDistance(FrozenTimm(backbone, size, pretrained, backbone_weights, features_only=True))


def make_loss(loss: str = "auto", backbone=DEFAULT_BACKBONE, backbone_weights=None, pretrained: bool = True,
              perceptual_size: int = 224, pixel_weight: float = 1.0, perceptual_weight: float = 1.0):
    """The inversion loss: (fn(x, y) -> per-image loss [B], info dict). `loss`:
    - "timm": pixel_weight * MSE + perceptual_weight * `PerceptualDistance` on timm `backbone`
      (a model name, or an nn.Module returning feature maps); fails if its weights are unavailable;
    - "auto": "timm" when the weights can be had, otherwise "multiscale" (the reason is recorded);
    - "multiscale": `multiscale_loss` (pixel + gradient MSE at 3 scales);
    - "pixel": MSE only.
    info: {"loss": the loss used, "perceptual": backbone name or None, "note": why (for "auto")}."""
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if loss in ("auto", "timm"):
        name = backbone if isinstance(backbone, str) else f"custom:{type(backbone).__name__}"
        try:
            dist = (timm_perceptual(backbone, backbone_weights, pretrained, perceptual_size) if isinstance(backbone, str)
                    else PerceptualDistance(FrozenTimm(backbone, size=perceptual_size)))
        except BackboneWeightsError as e:
            if loss == "timm":
                raise
            note = f"no weights for timm model {backbone!r} ({str(e).splitlines()[0]}); fell back to multiscale"
            return multiscale_loss, {"loss": "multiscale", "perceptual": None, "note": note}

        def fn(x, y):
            return pixel_weight * (x - y).square().flatten(1).mean(1) + perceptual_weight * dist(x, y)
        fn.distance = dist
        note = "" if pretrained or not isinstance(backbone, str) else "random (untrained) backbone weights: tests only"
        return fn, {"loss": "timm", "perceptual": name, "perceptual_size": perceptual_size,
                    "pixel_weight": pixel_weight, "perceptual_weight": perceptual_weight, "note": note}
    if loss == "multiscale":
        return multiscale_loss, {"loss": "multiscale", "perceptual": None, "note": ""}
    return (lambda x, y: (x - y).square().flatten(1).mean(1)), {"loss": "pixel", "perceptual": None, "note": ""}


# ---------------------------------------------------------------------------------------- inversion


def pick_targets(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of n samples, class-balanced (sample k has class k mod C in the order of the class ids
    present) and otherwise random with `seed`: a reproducible set of inversion targets."""
    classes = labels.unique()
    gen = torch.Generator().manual_seed(seed)
    out, used = [], set()
    for k in range(n):
        pool = [int(i) for i in (labels == classes[k % len(classes)]).nonzero().flatten() if int(i) not in used]
        if not pool:
            raise ValueError(f"n: only {len(labels)} samples, cannot pick {n} distinct targets")
        i = pool[int(torch.randint(len(pool), (1,), generator=gen))]
        used.add(i)
        out.append(i)
    return torch.tensor(out, dtype=torch.long)


@dataclass
class InversionResult:
    """ws [B, L, w_dim] (detached), images [B, C, H, W] (the reconstructions, no noise), per-target
    psnr / ssim [B] against the targets, history {"step", "lr", "loss", "psnr"} (means over the
    targets per step, with the noise of that step), loss_info (which loss was used)."""
    ws: torch.Tensor
    images: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    history: dict = field(default_factory=dict)
    loss_info: dict = field(default_factory=dict)
    mode: str = "w+"
    init: str = "class_mean"
    steps: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        """Plain numbers for metrics.json."""
        return {"mode": self.mode, "init": self.init, "steps": self.steps, "seconds": self.seconds,
                "psnr_mean": float(self.psnr.mean()), "ssim_mean": float(self.ssim.mean()),
                "psnr": [round(float(v), 4) for v in self.psnr], "ssim": [round(float(v), 4) for v in self.ssim],
                "final_loss": self.history["loss"][-1] if self.history.get("loss") else None,
                "loss": self.loss_info.get("loss"), "perceptual": self.loss_info.get("perceptual")}


def _check_target(G, target) -> torch.Tensor:
    target = _as_images(target, "target")
    if target.shape[1] != G.cfg.img_channels:
        raise ValueError(f"target: expected {G.cfg.img_channels} channel(s) like the generator, got {target.shape[1]}")
    if target.shape[0] == 0:
        raise ValueError("target: empty batch")
    return target


def _classes(G, c, batch: int):
    return check_classes(c, G.cfg.num_classes, batch, next(G.parameters()).device)


@torch.no_grad()
def w_statistics(G, c=None, n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Empirical mean of w per target class ([B, w_dim], or [1, w_dim] unconditional) from `n`
    samples of z per class (class k draws from seed (seed, k), so a target's start does not depend on
    the other targets of the batch), and the scalar std of w (sqrt of the mean per-dimension
    variance) over `n` samples of z with random classes."""
    cfg = G.cfg
    device = next(G.parameters()).device

    def sample(k, gen_seed):
        gen = torch.Generator().manual_seed(gen_seed)
        z = torch.randn(n, cfg.z_dim, generator=gen).to(device)
        if not cfg.conditional:
            return G.mapping(z, None)[:, 0]
        cc = torch.randint(0, cfg.num_classes, (n,), generator=gen) if k is None else torch.full((n,), k)
        return G.mapping(z, cc.to(device))[:, 0]

    std = sample(None, seed).var(0).mean().sqrt()
    if c is None:
        return sample(None, seed).mean(0, keepdim=True), std
    means = {int(k): sample(int(k), seed * 1_000_003 + 1 + int(k)).mean(0) for k in c.unique()}
    return torch.stack([means[int(k)] for k in c]), std


def initial_w(G, c=None, batch: int = 1, init: str = "class_mean", seed: int = 0) -> tuple[torch.Tensor, str]:
    """Starting w [B, w_dim] and a description: "class_mean" is the tracked running mean
    `G.mapping.w_avg[c]` (falling back to "sample_mean" when it was never tracked, i.e. is all zeros,
    as in an untrained generator); "sample_mean" is the mean of w over 512 samples of z."""
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS} or a tensor [B, w_dim], got {init!r}")
    c = _classes(G, c, batch)
    if init == "class_mean":
        avg = G.mapping.w_avg
        w = (avg[c] if c is not None else avg.expand(batch, -1)).detach().clone()
        if bool((w.abs().sum(-1) > 0).all()):
            return w, "class_mean"
    w, _ = w_statistics(G, c, seed=seed)
    return w.expand(batch, -1).clone(), "sample_mean"


def _check_schedule(mode: str, steps: int, lr: float, **fractions) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    for name, v in fractions.items():
        if not 0 <= v <= 1:
            raise ValueError(f"{name}: expected a fraction of the steps in [0, 1], got {v!r}")


def _start_codes(G, init, c, B: int, mode: str, seed: int) -> tuple[torch.Tensor, str]:
    """Starting codes [B, 1 (mode "w") or L (mode "w+"), w_dim] and how they were chosen."""
    L, device = G.cfg.levels, next(G.parameters()).device
    if isinstance(init, torch.Tensor):
        w0, init_used = init.detach().to(device).float().clone(), "given"
        if w0.dim() == 2:
            w0 = w0[:, None].expand(B, L, -1) if mode == "w+" else w0[:, None]
        if w0.shape not in ((B, 1, G.cfg.w_dim), (B, L, G.cfg.w_dim)) or (mode == "w" and w0.shape[1] != 1):
            raise ValueError(f"init: expected a tensor [B, w_dim] (or [B, {L}, w_dim] for w+) with B = {B}, "
                             f"got {list(init.shape)}")
    else:
        w, init_used = initial_w(G, c, B, init, seed)
        w0 = w[:, None].expand(B, L if mode == "w+" else 1, -1)
    return w0, init_used


def invert(G, target: torch.Tensor, c=None, mode: str = "w+", steps: int = 1000, lr: float = 0.1,
           ramp_up: float = 0.05, ramp_down: float = 0.25, noise: float = 0.05, noise_ramp: float = 0.75,
           loss: str = "auto", init="class_mean", backbone=DEFAULT_BACKBONE, backbone_weights=None,
           backbone_pretrained: bool = True, perceptual_size: int = 224, pixel_weight: float = 1.0,
           perceptual_weight: float = 1.0, seed: int = 0, loss_fn=None, progress: bool = False) -> InversionResult:
    """Optimise latent codes so that G renders `target` ([B, C, H, W] in [-1, 1], or uint8) on its
    H x W pixel grid. c: class ids [B] (or one int) for a conditional G. mode "w": one w per target
    shared by all levels; "w+": one w per level. init: "class_mean", "sample_mean" or a tensor of
    starting codes ([B, w_dim] or [B, L, w_dim]). loss / backbone / ...: see `make_loss` (or pass a
    ready `loss_fn(x, y) -> [B]`, recorded as "custom"). Returns an `InversionResult`."""
    _check_schedule(mode, steps, lr, ramp_up=ramp_up, ramp_down=ramp_down, noise_ramp=noise_ramp)
    t0 = time.time()
    target = _check_target(G, target)
    device = next(G.parameters()).device
    target = target.to(device)
    B, C, H, W = target.shape
    L = G.cfg.levels
    c = _classes(G, c, B)
    if loss_fn is None:
        loss_fn, loss_info = make_loss(loss, backbone, backbone_weights, backbone_pretrained, perceptual_size,
                                       pixel_weight, perceptual_weight)
    else:
        loss_info = {"loss": "custom", "perceptual": None, "note": ""}
    loss_info = {**loss_info, "requested": loss}

    w0, init_used = _start_codes(G, init, c, B, mode, seed)                  # [B, 1 or L, w_dim]
    _, w_std = w_statistics(G, c, n=256, seed=seed) if noise > 0 else (None, torch.tensor(0.0))
    w_opt = nn.Parameter(w0.contiguous().clone())                           # [B, 1 or L, w_dim]
    opt = torch.optim.Adam([w_opt], lr=lr, betas=(0.9, 0.999))
    gen = torch.Generator(device=device).manual_seed(seed)
    requires = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    hist = {"step": [], "lr": [], "loss": [], "psnr": []}
    try:
        for step in progress_bar(range(steps), desc=f"invert ({mode})", disable=not progress):
            cur_lr = lr_schedule(step, steps, lr, ramp_up, ramp_down)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            sigma = float(w_std) * noise_schedule(step, steps, noise, noise_ramp)
            w = w_opt + sigma * torch.randn(w_opt.shape, generator=gen, device=device) if sigma > 0 else w_opt
            ws = w.expand(B, L, -1)                                        # [B, L, w_dim]
            img = synthesize(G, ws, H, W)
            per = loss_fn(img, target)                                     # [B]
            opt.zero_grad(set_to_none=True)
            per.sum().backward()                                           # each target's loss reaches only its code
            opt.step()
            hist["step"].append(step)
            hist["lr"].append(cur_lr)
            hist["loss"].append(float(per.detach().mean()))
            hist["psnr"].append(float(psnr(to_unit(img), to_unit(target)).mean()))
    finally:
        for p, r in zip(G.parameters(), requires):
            p.requires_grad_(r)
    ws = w_opt.detach().expand(B, L, -1).contiguous()
    with torch.no_grad():
        images = synthesize(G, ws, H, W)
    p, s = psnr(to_unit(images), to_unit(target)), ssim(to_unit(images), to_unit(target))
    return InversionResult(ws=ws, images=images, psnr=p, ssim=s, history=hist, loss_info=loss_info, mode=mode,
                           init=init_used, steps=steps, seconds=time.time() - t0)


# ----------------------------------------------------------------------------------- pivotal tuning


@dataclass
class TuningResult:
    """The tuned generator (a copy), reconstructions and psnr / ssim [B] before and after, the loss
    history, and `locality_psnr`: PSNR between the original and the tuned generator on
    `locality_samples` random latents (how much tuning changed the rest of the latent space)."""
    G: nn.Module
    images: torch.Tensor
    psnr_before: torch.Tensor
    psnr_after: torch.Tensor
    ssim_before: torch.Tensor
    ssim_after: torch.Tensor
    history: dict
    locality_psnr: float
    seconds: float

    def summary(self) -> dict:
        return {"psnr_before": float(self.psnr_before.mean()), "psnr_after": float(self.psnr_after.mean()),
                "ssim_before": float(self.ssim_before.mean()), "ssim_after": float(self.ssim_after.mean()),
                "locality_psnr": self.locality_psnr, "seconds": self.seconds,
                "steps": len(self.history.get("loss", []))}


def pivotal_tuning(G, ws: torch.Tensor, target: torch.Tensor, steps: int = 350, lr: float = 3e-4,
                   ramp_up: float = 0.1, loss: str = "multiscale", loss_fn=None, locality_samples: int = 64,
                   seed: int = 0, progress: bool = False, **loss_kw) -> TuningResult:
    """Pivotal tuning (Roich et al. 2022): keep the inverted codes ws [B, L, w_dim] fixed (the
    pivots) and fine-tune a copy of G's synthesis network with Adam at `lr` (PTI's 3e-4, reached by a
    linear ramp-up over the first `ramp_up` of the steps: Adam's first steps move every weight by
    about lr, which the multiplicative levels amplify) so that it renders the targets; one copy is
    tuned for the whole batch. G itself is left unchanged."""
    t0 = time.time()
    target = _check_target(G, target)
    G.synthesis.check_ws(ws)
    if ws.shape[0] != target.shape[0]:
        raise ValueError(f"ws: expected one code per target ({target.shape[0]}), got {ws.shape[0]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if loss_fn is None:
        loss_fn, _ = make_loss(loss, **loss_kw)
    B, C, H, W = target.shape
    ws = ws.detach()
    Gt = copy.deepcopy(G).train(False)
    Gt.requires_grad_(False)
    Gt.synthesis.requires_grad_(True)
    opt = torch.optim.Adam(Gt.synthesis.parameters(), lr=lr)
    hist = {"step": [], "loss": [], "psnr": []}
    with torch.no_grad():
        before = synthesize(G, ws, H, W)
    for step in progress_bar(range(steps), desc="pivotal tuning", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = lr_schedule(step + 1, steps, lr, ramp_up, 0.0)
        img = synthesize(Gt, ws, H, W)
        per = loss_fn(img, target)
        opt.zero_grad(set_to_none=True)
        per.sum().backward()
        opt.step()
        hist["step"].append(step)
        hist["loss"].append(float(per.detach().mean()))
        hist["psnr"].append(float(psnr(to_unit(img), to_unit(target)).mean()))
    Gt.requires_grad_(False)
    with torch.no_grad():
        after = synthesize(Gt, ws, H, W)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(locality_samples, G.cfg.z_dim, generator=gen).to(ws.device)
        cc = (torch.randint(0, G.cfg.num_classes, (locality_samples,), generator=gen).to(ws.device)
              if G.cfg.conditional else None)
        wr = G.mapping(z, cc)
        loc = float(psnr(to_unit(synthesize(Gt, wr, H, W)), to_unit(synthesize(G, wr, H, W))).mean())
    t = to_unit(target)
    return TuningResult(G=Gt, images=after, psnr_before=psnr(to_unit(before), t), psnr_after=psnr(to_unit(after), t),
                        ssim_before=ssim(to_unit(before), t), ssim_after=ssim(to_unit(after), t),
                        history=hist, locality_psnr=loc, seconds=time.time() - t0)
