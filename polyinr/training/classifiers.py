"""Frozen classifiers: the letters classifier and classifier guidance.

The letters classifier is a small CNN trained on the training fonts of the embedded letters data
(seconds on a CPU, deterministic, cached on disk); its accuracy on the held-out fonts is recorded
with it. Training uses it for classifier guidance on letters (`cls_model: letters`); evaluation uses
it for class consistency and as the feature space of the offline letters metrics. Other data use a
frozen timm ImageNet classifier for guidance (`FrozenTimm`).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import TrainConfig
from ..core.files import atomic_save, cache_dir
from ..core.images import to_float
from ..core.progress import progress_bar
from .backbones import FrozenTimm
from .data import letter_fonts, letters

CLASSIFIER_VERSION = 1


class LettersCNN(nn.Module):
    """1-channel images in [-1, 1] of any size >= 16 -> 26 logits; `features` gives the 64-d
    penultimate representation. `stem` > 0 puts that many learned stride-2 blocks (4x4 conv, batch
    norm, ReLU, 16 channels) in front of the body, so a classifier for 2^stem x 16 px images sees every
    pixel yet runs its body on a 16 x 16 map (the higher-resolution letters metrics use this)."""

    def __init__(self, num_classes: int = 26, channels: int = 1, stem: int = 0):
        super().__init__()
        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))
        self.stem = nn.Sequential(*[nn.Sequential(nn.Conv2d(channels if i == 0 else 16, 16, 4, stride=2, padding=1),
                                                  nn.BatchNorm2d(16), nn.ReLU()) for i in range(stem)])
        self.body = nn.Sequential(block(16 if stem else channels, 16), block(16, 32), block(32, 64))
        self.head = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x)).mean(dim=(2, 3))            # [B, 64]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _shift(x: torch.Tensor, gen: torch.Generator, max_px: int) -> torch.Tensor:
    """Random integer translation by up to max_px pixels, padding with the background (white = 1)."""
    B, C, H, W = x.shape
    pad = F.pad(x, [max_px] * 4, value=1.0)
    dy = torch.randint(0, 2 * max_px + 1, (B,), generator=gen)
    dx = torch.randint(0, 2 * max_px + 1, (B,), generator=gen)
    return torch.stack([pad[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])


@torch.no_grad()
def accuracy(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch):
        x = to_float(images_u8[i:i + batch])
        correct += (model(x).argmax(1) == labels[i:i + batch]).sum().item()
    return correct / len(images_u8)


def train_letters_classifier(resolution: int = 16, seed: int = 0, epochs: int = 4, batch: int = 128,
                             progress: bool = False, stem: int = 0) -> tuple[LettersCNN, dict]:
    """Train the CNN (with `stem` stride-2 blocks) on the letters training fonts; evaluate on the
    held-out fonts."""
    t0 = time.time()
    train_set, test_set = letters(resolution, "train"), letters(resolution, "test")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LettersCNN(train_set.num_classes, train_set.channels, stem)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * (len(train_set) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    X, Y = train_set.images, train_set.labels
    model.train()
    for _ in progress_bar(range(epochs), desc="letters classifier", disable=not progress):
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X) - batch + 1, batch):
            idx = perm[i:i + batch]
            x = _shift(to_float(X[idx]), gen, max(1, resolution // 16))
            loss = F.cross_entropy(model(x), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    info = {"resolution": resolution, "seed": seed, "epochs": epochs, "train_size": len(X),
            "train_accuracy": accuracy(model, X, Y), "heldout_accuracy": accuracy(model, test_set.images, test_set.labels),
            "heldout_fonts": sorted({f["name"] for f in letter_fonts() if f["split"] == "test"}),
            "train_seconds": time.time() - t0, "version": CLASSIFIER_VERSION, "stem": stem}
    return model.eval(), info


def letters_classifier(resolution: int = 16, seed: int = 0, epochs: int = 4, cache: bool = True,
                       return_info: bool = False, stem: int = 0):
    """The cached letters classifier (trained on first use, seconds on a CPU), frozen in eval mode.
    `stem`: stride-2 input blocks (see LettersCNN); the body then sees resolution / 2**stem pixels."""
    if isinstance(stem, bool) or not isinstance(stem, int) or stem < 0 or (stem and resolution < 16 * 2 ** stem):
        raise ValueError(f"stem: expected an integer >= 0 with resolution / 2**stem >= 16, got stem={stem!r} "
                         f"at resolution {resolution}")
    tag = f"-stem{stem}" if stem else ""
    path = cache_dir() / "classifiers" / f"letters-v{CLASSIFIER_VERSION}-r{resolution}-e{epochs}-s{seed}{tag}.pt"
    if cache and path.is_file():
        ck = torch.load(path, map_location="cpu", weights_only=True)
        model = LettersCNN(26, 1, stem)
        model.load_state_dict(ck["state_dict"])
        info = {"stem": stem, **ck["info"]}
    else:
        model, info = train_letters_classifier(resolution, seed, epochs, stem=stem)
        if cache:
            atomic_save({"state_dict": model.state_dict(), "info": info}, path)
    model = model.eval().requires_grad_(False)
    return (model, info) if return_info else model


def build_classifier(cfg: TrainConfig, device):
    """Frozen classifier for guidance (cls_weight > 0): the letters CNN or a timm ImageNet model."""
    if cfg.cls_weight == 0:
        return None
    if cfg.cls_model == "letters":
        return letters_classifier(cfg.resolution).to(device)
    return FrozenTimm(cfg.cls_model, pretrained=cfg.pretrained, backbone_weights=cfg.backbone_weights).to(device)
