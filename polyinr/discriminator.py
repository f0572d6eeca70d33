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

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")


class BackboneWeightsError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------- conv


class ResBlockDown(nn.Module):
    """x -> (conv3x3(lrelu(conv3x3(lrelu(x)))) + conv1x1(x)), both average-pooled by 2."""

    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1))
        self.first = first

    def forward(self, x):
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class ConvDiscriminator(nn.Module):
    """Residual SN-conv D: resolution R -> 4x4 in log2(R/4) blocks, channel widths doubling from
    `width` up to `max_width`; logits = linear(f) + <embed(c), f> with f the spatially summed features."""

    def __init__(self, channels: int, resolution: int, num_classes: int = 0, width: int = 64, max_width: int = 256):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution: the conv discriminator needs a power of two >= 8, got {resolution}")
        blocks, cin = [], channels
        for i in range(int(math.log2(resolution)) - 2):
            cout = min(width * 2 ** i, max_width)
            blocks.append(ResBlockDown(cin, cout, first=(i == 0)))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out = spectral_norm(nn.Linear(cin, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, cin)) if num_classes else None
        self.num_classes = num_classes
        self.resolution = resolution

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        f = F.leaky_relu(self.blocks(x), 0.2).sum(dim=(2, 3))       # [B, ch]
        logits = self.out(f)                                         # [B, 1]
        if self.embed is not None:
            logits = logits + (self.embed(c) * f).sum(dim=1, keepdim=True)
        return logits


# ---------------------------------------------------------------------------------------- projected


def _weights_file(name: str, backbone_weights) -> Path | None:
    """Local weights for timm model `name`: backbone_weights is None, a dict {name: path}, or a folder
    holding NAME.safetensors / NAME.pth / NAME.bin."""
    if backbone_weights is None:
        return None
    if isinstance(backbone_weights, dict):
        if name not in backbone_weights:
            return None
        path = Path(backbone_weights[name])
        if not path.is_file():
            raise FileNotFoundError(f"backbone_weights[{name!r}]: file {str(path)!r} does not exist")
        return path
    folder = Path(backbone_weights)
    if not folder.is_dir():
        raise FileNotFoundError(f"backbone_weights: folder {str(folder)!r} does not exist")
    for suffix in WEIGHT_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def create_timm_model(name: str, pretrained: bool = True, backbone_weights=None, **kwargs) -> nn.Module:
    """timm.create_model with the weights from, in order: a local file (backbone_weights), the timm /
    Hugging Face download when pretrained=True, or random init when pretrained=False (tests only).
    Offline without a file this is a BackboneWeightsError that says how to supply one."""
    import timm
    path = _weights_file(name, backbone_weights)
    if path is not None:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as e:  # offline: LocalEntryNotFoundError / OSError / ConnectionError
        raise BackboneWeightsError(
            f"could not obtain pretrained weights for timm model {name!r} ({type(e).__name__}: {e}).\n"
            f"Either run once with network access (timm caches the download under ~/.cache/huggingface), or "
            f"download the file elsewhere and pass backbone_weights=FOLDER holding '{name}.safetensors' (or .pth), "
            f"e.g. --backbone-weights FOLDER; on an offline machine set HF_HUB_OFFLINE=1 to fail fast."
        ) from e


class FeatureNetwork(nn.Module):
    """A frozen timm backbone giving four maps at strides 4, 8, 16, 32 of the input."""

    def __init__(self, name: str, pretrained: bool, backbone_weights, input_size: int):
        super().__init__()
        self.name = name
        self.vit = name.startswith(("deit", "vit"))
        if self.vit:
            self.net = create_timm_model(name, pretrained, backbone_weights, features_only=True,
                                         out_indices=(2, 5, 8, 11), dynamic_img_size=True)
        else:
            self.net = create_timm_model(name, pretrained, backbone_weights, features_only=True,
                                         out_indices=(1, 2, 3, 4))
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.channels = list(self.net.feature_info.channels())
        self.sizes = [max(1, input_size // s) for s in (4, 8, 16, 32)]
        self.input_size = input_size
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):  # always frozen, BatchNorm statistics included
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        feats = self.net(x)
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
    """kind = "conv" (kw: width, max_width) or "projected" (kw: backbones, input_size, pretrained,
    backbone_weights, cmap_dim, projection_seed)."""
    if kind == "conv":
        return ConvDiscriminator(channels, resolution, num_classes, **kw)
    if kind == "projected":
        return ProjectedDiscriminator(num_classes, **kw)
    raise ValueError(f"discriminator: expected 'projected' or 'conv', got {kind!r}")
