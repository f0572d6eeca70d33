"""The letters feature space: class consistency, real reference glyphs, and the features of the
letters classifier (`polyinr.training.classifiers.LettersCNN`, 64-d), one classifier per resolution,
in which the offline letters metrics (`*_letters`) are computed.

Class consistency is the share of generated samples the classifier assigns to their conditioning class.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..core.files import cache_dir
from ..core.images import to_float
from ..core.render import render
from ..training.classifiers import LettersCNN
from ..training.data import LETTERS, letter_fonts, letter_params, letters, render_letter
from .fid import feature_statistics, module_sha256

FLOOR_SEED = 1


@torch.no_grad()
def class_consistency(G, classifier: nn.Module, n_per_class: int = 100, seed: int = 0, psi: float = 1.0,
                      resolution: int | None = None, batch: int = 256) -> float:
    """Share of generated samples (n_per_class per class, sample k of class c drawn from seed
    seed * 1_000_000 + c * 10_000 + k) that the classifier assigns to their conditioning class."""
    cfg = G.cfg
    if not cfg.conditional:
        raise ValueError("class_consistency: the generator is unconditional")
    R = resolution or cfg.resolution
    c_all = torch.arange(cfg.num_classes).repeat_interleave(n_per_class)
    k_all = torch.arange(n_per_class).repeat(cfg.num_classes)
    correct = 0
    for i in range(0, len(c_all), batch):
        c, k = c_all[i:i + batch], k_all[i:i + batch]
        z = torch.stack([torch.randn(cfg.z_dim, generator=torch.Generator().manual_seed(
            seed * 1_000_000 + int(ci) * 10_000 + int(ki))) for ci, ki in zip(c, k)])
        img = render(G, G.mapping(z, c, psi=psi), R, R)
        correct += (classifier(img).argmax(1) == c).sum().item()
    return correct / len(c_all)


def real_letters(resolution: int, n: int | None = None, split: str = "train", seed: int = 0):
    """Real letters, uint8 [n, 1, R, R] and labels [n]. n=None: the split itself,
    `polyinr.training.data.letters(resolution, split, seed=seed)`. Otherwise n distinct glyphs of the virtual
    split with V = ceil(n / (faces * 26)) jittered variants drawn under `seed`: the first n of a fixed
    permutation, rendered directly, so the same n glyphs at every resolution."""
    if n is None:
        ds = letters(resolution, split, seed=seed)
        return ds.images, ds.labels
    fonts = [(i, f) for i, f in enumerate(letter_fonts()) if f["split"] == split]
    per_variant = len(fonts) * len(LETTERS)
    V = max(1, math.ceil(n / per_variant))
    order = np.random.default_rng([seed, 1_000_003]).permutation(per_variant * V)[:n]
    images = np.empty((n, 1, resolution, resolution), np.uint8)
    labels = np.empty(n, np.int64)
    for j, i in enumerate(order):                          # i = (face * 26 + letter) * V + variant
        fi, li, v = i // (26 * V), (i // V) % 26, i % V
        gi, font = fonts[fi]
        images[j, 0] = render_letter(font, LETTERS[li], letter_params(seed, gi, li, int(v)), resolution)
        labels[j] = li
    return torch.from_numpy(images), torch.from_numpy(labels)


def true_glyphs(labels, resolution: int, seed: int = FLOOR_SEED) -> torch.Tensor:
    """Real glyphs of the given classes, for figures: sample i is letter labels[i] of training face
    i mod 20 with jitter variant i under `seed`, uint8 [n, 1, R, R]."""
    fonts = [(i, f) for i, f in enumerate(letter_fonts()) if f["split"] == "train"]
    out = np.empty((len(labels), 1, resolution, resolution), np.uint8)
    for i, li in enumerate(int(v) for v in labels):
        gi, font = fonts[i % len(fonts)]
        out[i, 0] = render_letter(font, LETTERS[li], letter_params(seed, gi, li, i), resolution)
    return torch.from_numpy(out)


@torch.inference_mode()
def letters_features(clf, images_u8: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """LettersCNN.features of uint8 images [N, 1, H, W] -> float32 [N, 64] (on the CPU)."""
    device = next(clf.parameters()).device
    return torch.cat([clf.features(to_float(images_u8[i:i + batch], device)).float().cpu()
                      for i in range(0, len(images_u8), batch)]) if len(images_u8) else torch.empty(0, 64)


@torch.inference_mode()
def letters_predict(clf, features: torch.Tensor) -> torch.Tensor:
    return clf.head(features.to(next(clf.parameters()).device)).argmax(1).cpu()


def stem_for(k: int) -> int:
    """Stride-2 stem blocks of the letters classifier for k-times the training resolution: log2 k,
    so its body sees the same R x R map as the 1x classifier while the stem sees every kR pixel."""
    stem = round(math.log2(k)) if k >= 1 else -1
    if stem < 0 or 2 ** stem != k:
        raise ValueError(f"ks: expected powers of two (1, 2, 4, 8, ...), got {k!r}")
    return stem


def random_letters_cnn(seed: int = 0, stem: int = 0):
    """An untrained LettersCNN from `seed` (random-feature letters metrics; smoke runs)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LettersCNN(stem=stem).eval().requires_grad_(False)


def reference_features(clf, resolution: int, n: int | None = None, split: str = "train", seed: int = 0) -> dict:
    """Features of the real reference set (see `real_letters`) under `clf`, cached as .npz under
    cache_dir()/eval keyed by dataset, split, seed, n, resolution and the extractor's SHA-256.
    Returns {"features", "labels", "mu", "sigma", "path", "extractor_sha256"}."""
    sha = module_sha256(clf)
    path = cache_dir() / "eval" / f"letters-{split}-s{seed}-n{n or 'all'}-r{resolution}-lettersCNN-{sha[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            feats, labels = torch.from_numpy(z["features"]), torch.from_numpy(z["labels"])
    else:
        images, labels = real_letters(resolution, n, split, seed)
        feats = letters_features(clf, images)
        mu, sigma = feature_statistics(feats)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, features=feats.numpy(), labels=labels.numpy(), mu=mu, sigma=sigma)
        tmp.replace(path)
    mu, sigma = feature_statistics(feats)
    return {"features": feats, "labels": labels, "mu": mu, "sigma": sigma, "path": str(path), "extractor_sha256": sha}
