"""Frozen pretrained timm networks, the one wrapper used by the projected discriminator, classifier
guidance and the perceptual inversion loss, and where their weights come from.

Weights come from, in order: a local file (`backbone_weights`: a folder holding NAME.safetensors /
.pth / .bin / .pt, or {name: path}), the timm / Hugging Face download when `pretrained=True`, or random
init with `pretrained=False` (tests only). Offline without a file, `BackboneWeightsError` says how to
supply one.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BackboneWeightsError(RuntimeError):
    pass


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
    import timm  # lazy: importing timm takes seconds, and only these networks need it
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


class FrozenTimm(nn.Module):
    """A frozen network on images in [-1, 1]: grey images are repeated to 3 channels, resized
    (bilinear) to `size` and normalised with the network's mean / std, then `net` runs. `net` is a timm
    model name (built by `create_timm_model` with `timm_kwargs`, e.g. features_only=True) or any module
    (ImageNet mean / std unless given). `size=None` takes the timm model's input size. Always in eval
    mode (BatchNorm statistics included) and without gradients to its weights; gradients still reach
    the input."""

    def __init__(self, net: str | nn.Module, size: int | None = None, pretrained: bool = True, backbone_weights=None,
                 mean=None, std=None, **timm_kwargs):
        super().__init__()
        self.net = create_timm_model(net, pretrained, backbone_weights, **timm_kwargs) if isinstance(net, str) else net
        cfg = getattr(self.net, "pretrained_cfg", None) or {}
        self.size = size or cfg["input_size"][-1]
        mean, std = mean or cfg.get("mean", IMAGENET_MEAN), std or cfg.get("std", IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):   # always frozen, BatchNorm statistics included
        return super().train(False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1 or 3, H, W] in [-1, 1] -> the network's input [B, 3, size, size]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, x: torch.Tensor):
        return self.net(self.prepare(x))
