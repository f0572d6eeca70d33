"""Losses of the training recipe (StyleGAN-XL / Projected GAN, as used by the Poly-INR release):
hinge loss for D and G, and an optional classifier-guidance cross-entropy for G. Pure functions
returning named terms for logging.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict:
    """D: mean relu(1 - D(real)) + mean relu(1 + D(fake)) over every logit (all heads, all positions)."""
    real = F.relu(1 - real_logits.float()).mean()
    fake = F.relu(1 + fake_logits.float()).mean()
    return {"loss": real + fake, "d_real": real, "d_fake": fake}


def g_hinge_loss(fake_logits: torch.Tensor) -> dict:
    """G: mean -D(fake)."""
    loss = -fake_logits.float().mean()
    return {"loss": loss, "g_adv": loss}


def classifier_guidance_loss(class_logits: torch.Tensor, c: torch.Tensor, weight: float) -> dict:
    """weight * cross-entropy of a pretrained classifier on generated images against their class."""
    ce = F.cross_entropy(class_logits.float(), c)
    return {"loss": weight * ce, "g_cls": ce}
