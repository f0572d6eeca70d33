"""Discriminators.

`projected` — the recipe of the Poly-INR release (Projected GAN, Sauer et al. 2021, as used by
StyleGAN-XL): frozen pretrained timm feature networks (`tf_efficientnet_lite0`: four maps at strides
4-32; `deit_base_distilled_patch16_224`: tokens of blocks 2/5/8/11 as maps), frozen random
cross-channel mixing (1x1 convs) and cross-scale mixing (top-down: upsample x2, project, add), and four
trainable multi-scale heads per backbone (spectral-norm 4x4 stride-2 convs + BatchNorm + LeakyReLU(0.2)
down to 8x8, then a 4x4 conv), class-conditional by projection onto a class embedding.

`conv` — a small spectral-norm residual conv discriminator with class projection (Miyato & Koyama
2018), for small images and CPU runs.

Both return logits [B, K] (K = number of logit positions over all heads); the hinge loss averages them.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..core.checkpoint import load_checkpoint
from ..core.config import ModelConfig, TrainConfig
from .backbones import FrozenTimm

# --------------------------------------------------------------------------------------------- conv


def _normalized(sn: bool):
    """The layer wrapper of the conv D: spectral normalisation, or none (then R1 keeps D in check)."""
    return spectral_norm if sn else (lambda m: m)


class ResBlockDown(nn.Module):
    """x -> (conv3x3(lrelu(conv3x3(lrelu(x)))) + conv1x1(x)), both average-pooled by 2."""

    def __init__(self, cin: int, cout: int, first: bool = False, sn: bool = True):
        super().__init__()
        norm = _normalized(sn)
        self.conv1 = norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = norm(nn.Conv2d(cin, cout, 1))
        self.first = first

    def forward(self, x):
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


def minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """StyleGAN2's minibatch standard deviation: x [B, C, H, W] -> [B, C + 1, H, W], the extra channel
    holding, for each group of `group` consecutive samples (min(group, B), which must divide B), the
    mean over channels and positions of the features' standard deviation across the group. A D that
    sees it can tell a batch of near-identical samples from a varied one. Consecutive groups (StyleGAN2
    strides them) keep the result independent of how a batch is split over processes and micro-batches
    whose sizes are multiples of the group."""
    B, C, H, W = x.shape
    g = min(group, B)
    if B % g:
        raise ValueError(f"d_mbstd: the group size {g} must divide the batch seen by D ({B})")
    y = x.float().reshape(B // g, g, C, H, W)
    y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))       # [B // g]
    y = y.repeat_interleave(g).reshape(B, 1, 1, 1).expand(B, 1, H, W).to(x.dtype)
    return torch.cat([x, y], dim=1)


class ConvDiscriminator(nn.Module):
    """Residual SN-conv D: resolution R -> 4x4 in log2(R/4) blocks, channel widths doubling from
    `width` up to `max_width`; logits = linear(f) + <embed(c), f> with f the spatially summed features.
    With `mbstd` > 0, a minibatch-std channel and a 3x3 conv come before the sum (StyleGAN2's D end).
    `sn=False` drops the spectral normalisation of every layer (then an R1 penalty keeps D in check)."""

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, width: int = 64, max_width: int = 256,
                 mbstd: int = 0, sn: bool = True):
        super().__init__()
        norm = _normalized(sn)
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution: the conv discriminator needs a power of two >= 8, got {resolution}")
        blocks, cin = [], channels
        for i in range(int(math.log2(resolution)) - 2):
            cout = min(width * 2 ** i, max_width)
            blocks.append(ResBlockDown(cin, cout, first=(i == 0), sn=sn))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = mbstd
        self.mbstd_conv = norm(nn.Conv2d(cin + 1, cin, 3, padding=1)) if mbstd else None
        self.out = norm(nn.Linear(cin, 1))
        self.embed = norm(nn.Embedding(num_classes, cin)) if num_classes else None
        self.num_classes = num_classes
        self.resolution = resolution

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(x)                                           # [B, ch, 4, 4]
        if self.mbstd:
            h = self.mbstd_conv(minibatch_std(F.leaky_relu(h, 0.2), self.mbstd))
        f = F.leaky_relu(h, 0.2).sum(dim=(2, 3))                     # [B, ch]
        logits = self.out(f)                                         # [B, 1]
        if self.embed is not None:
            logits = logits + (self.embed(c) * f).sum(dim=1, keepdim=True)
        return logits


# ---------------------------------------------------------------------------------------- projected


class FeatureNetwork(FrozenTimm):
    """A frozen timm backbone giving four maps at strides 4, 8, 16, 32 of the input."""

    def __init__(self, name: str, pretrained: bool, backbone_weights, input_size: int):
        self.vit = name.startswith(("deit", "vit"))
        layers = dict(out_indices=(2, 5, 8, 11), dynamic_img_size=True) if self.vit else dict(out_indices=(1, 2, 3, 4))
        super().__init__(name, input_size, pretrained, backbone_weights, features_only=True, **layers)
        self.name = name
        self.channels = list(self.net.feature_info.channels())
        self.sizes = [max(1, input_size // s) for s in (4, 8, 16, 32)]
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = super().forward(x)
        if self.vit:  # tokens as [B, C, 14, 14] maps -> resample to strides 4..32 (parameter-free)
            feats = [F.interpolate(f, size=(s, s), mode="bilinear", align_corners=False)
                     for f, s in zip(feats, self.sizes)]
        return feats


class RandomProjection(nn.Module):
    """Frozen random cross-channel mixing (1x1 convs to 64/128/256/512 channels) and cross-scale
    mixing (top-down: the coarser map is upsampled to the finer one, projected by a 1x1 conv and added)."""

    def __init__(self, channels: list[int], out_channels=(64, 128, 256, 512), seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.ccm = nn.ModuleList(nn.Conv2d(ci, co, 1) for ci, co in zip(channels, out_channels))
        self.csm = nn.ModuleList(nn.Conv2d(out_channels[i + 1], out_channels[i], 1) for i in range(3))
        for conv in list(self.ccm) + list(self.csm):   # kaiming-normal, drawn from a fixed seed: same on every rank
            fan_in = conv.weight.shape[1]
            conv.weight.data = torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in)
            conv.bias.data.zero_()
        self.out_channels = list(out_channels)
        self.requires_grad_(False)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        f = [conv(x) for conv, x in zip(self.ccm, feats)]
        out = [None] * 4
        out[3] = f[3]
        for i in (2, 1, 0):
            up = F.interpolate(out[i + 1], size=f[i].shape[-2:], mode="bilinear", align_corners=False)
            out[i] = f[i] + self.csm[i](up)
        return out


class DownBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class DiscHead(nn.Module):
    """Trainable head on one projected map: DownBlocks to <= 8x8, then a 4x4 conv; conditional heads
    project their cmap_dim outputs on the class embedding."""

    WIDTH = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64}

    def __init__(self, cin: int, size: int, num_classes: int, cmap_dim: int = 64):
        super().__init__()
        layers, ch = [], cin
        while size > 8:
            cout = self.WIDTH.get(size // 2, 64)
            layers.append(DownBlock(ch, cout))
            ch, size = cout, size // 2
        self.down = nn.Sequential(*layers)
        self.cmap_dim = cmap_dim if num_classes else 1
        k = min(4, size)
        self.out = spectral_norm(nn.Conv2d(ch, self.cmap_dim, k))
        self.embed = spectral_norm(nn.Embedding(num_classes, cmap_dim)) if num_classes else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        out = self.out(self.down(x))                                 # [B, cmap, h, w]
        if self.embed is not None:
            cmap = self.embed(c)[:, :, None, None]                   # [B, cmap, 1, 1]
            out = (out * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return out.flatten(1)                                        # [B, h*w]


class ProjectedDiscriminator(nn.Module):
    def __init__(self, num_classes: int = 0,
                 backbones=("tf_efficientnet_lite0", "deit_base_distilled_patch16_224"),
                 input_size: int = 224, pretrained: bool = True, backbone_weights=None, cmap_dim: int = 64,
                 projection_seed: int = 0):
        super().__init__()
        self.features = nn.ModuleList(FeatureNetwork(b, pretrained, backbone_weights, input_size) for b in backbones)
        self.projections = nn.ModuleList(RandomProjection(f.channels, seed=projection_seed + i)
                                         for i, f in enumerate(self.features))
        self.heads = nn.ModuleList(
            nn.ModuleList(DiscHead(ch, size, num_classes, cmap_dim) for ch, size in zip(p.out_channels, f.sizes))
            for f, p in zip(self.features, self.projections))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        logits = []
        for feat, proj, heads in zip(self.features, self.projections, self.heads):
            maps = proj(feat(x))                                     # frozen: gradients reach x only
            logits += [head(m, c) for head, m in zip(heads, maps)]
        return torch.cat(logits, dim=1)                              # [B, K]


def build_discriminator(kind: str, channels: int, resolution: int, num_classes: int = 0, **kw) -> nn.Module:
    """kind = "conv" (kw: width, max_width, mbstd, sn) or "projected" (kw: backbones, input_size, pretrained,
    backbone_weights, cmap_dim, projection_seed)."""
    if kind == "conv":
        return ConvDiscriminator(channels, resolution, num_classes, **kw)
    if kind == "projected":
        return ProjectedDiscriminator(num_classes, **kw)
    raise ValueError(f"discriminator: expected 'projected' or 'conv', got {kind!r}")


def build_D(cfg: TrainConfig, channels: int, num_classes: int) -> nn.Module:
    """The discriminator a training config asks for."""
    if cfg.discriminator == "conv":
        return build_discriminator("conv", channels, cfg.resolution, num_classes, width=cfg.d_width,
                                   max_width=cfg.d_max_width, mbstd=cfg.d_mbstd, sn=cfg.d_spectral_norm)
    return build_discriminator("projected", channels, cfg.resolution, num_classes, backbones=cfg.backbones,
                               input_size=cfg.d_input_size, pretrained=cfg.pretrained,
                               backbone_weights=cfg.backbone_weights, projection_seed=cfg.seed)


def load_discriminator(path, map_location="cpu"):
    """The trained discriminator of a training checkpoint (a run's `latest.pt`), rebuilt from the
    checkpoint's training and model configs. Its weights, frozen feature networks included, come from
    the checkpoint, so no pretrained download is needed. Returned in eval mode without gradients:
    `D(x, c)` gives logits [B, K] for images x [B, C, R, R] in [-1, 1] at the training resolution R
    (class ids c for a conditional model); higher means "judged real"."""
    ckpt = load_checkpoint(path, map_location)
    if "D" not in ckpt or "train_config" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} holds no discriminator: only training checkpoints (a run's "
                         f"latest.pt) do; it has {sorted(ckpt)}")
    tc = dataclasses.replace(TrainConfig.from_dict(ckpt["train_config"]), pretrained=False, backbone_weights=None)
    mc = ModelConfig.from_dict(ckpt["model_config"])
    D = build_D(tc, mc.img_channels, mc.num_classes)
    try:
        D.load_state_dict(ckpt["D"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint {str(path)!r}: its D weights do not fit its train_config: {e}") from e
    return D.to(map_location).eval().requires_grad_(False)
