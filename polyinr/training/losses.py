"""Losses of the training recipe (StyleGAN-XL / Projected GAN, as used by the Poly-INR release):
hinge loss for D and G, or StyleGAN2's non-saturating logistic loss; the R1 gradient penalty; and an
optional classifier-guidance cross-entropy for G. Pure functions returning named terms for logging.
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


def d_ns_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict:
    """D: mean softplus(-D(real)) + mean softplus(D(fake)) (the logistic loss of StyleGAN2)."""
    real = F.softplus(-real_logits.float()).mean()
    fake = F.softplus(fake_logits.float()).mean()
    return {"loss": real + fake, "d_real": real, "d_fake": fake}


def g_ns_loss(fake_logits: torch.Tensor) -> dict:
    """G: mean softplus(-D(fake)) (non-saturating)."""
    loss = F.softplus(-fake_logits.float()).mean()
    return {"loss": loss, "g_adv": loss}


D_LOSSES = {"hinge": d_hinge_loss, "ns": d_ns_loss}
G_LOSSES = {"hinge": g_hinge_loss, "ns": g_ns_loss}


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float) -> dict:
    """gamma / 2 * mean over samples of |grad_x sum D(x)|^2 at the real inputs x (which must require
    grad); differentiable (create_graph) so that D can be trained on it."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_inputs, create_graph=True)
    sq = grad.float().square().flatten(1).sum(1).mean()
    return {"loss": 0.5 * gamma * sq, "r1": sq}


def mode_seeking_loss(images: torch.Tensor, z: torch.Tensor, weight: float, eps: float = 1e-5) -> dict:
    """Mode seeking (MSGAN, Mao et al. 2019) on consecutive pairs (0, 1), (2, 3), ... of one class: for
    each pair ratio = mean |x_a - x_b| / mean |z_a - z_b|, loss = weight * mean over pairs of 1 / (ratio + eps),
    so G is pushed to map different latents of a class to different images. Averaged per pair (MSGAN
    averages the batch first), so the term is the same however a batch is split over processes and
    micro-batches of even size. An odd last sample is left out."""
    n = images.shape[0] // 2 * 2
    if n == 0:
        zero = images.float().sum() * 0
        return {"loss": zero, "g_ms": zero}
    x, zz = images[:n].float().flatten(1), z[:n].float()
    ratio = (x[0::2] - x[1::2]).abs().mean(1) / (zz[0::2] - zz[1::2]).abs().mean(1)          # [n / 2]
    return {"loss": weight * (1 / (ratio + eps)).mean(), "g_ms": ratio.mean()}


def classifier_guidance_loss(class_logits: torch.Tensor, c: torch.Tensor, weight: float) -> dict:
    """weight * cross-entropy of a pretrained classifier on generated images against their class."""
    ce = F.cross_entropy(class_logits.float(), c)
    return {"loss": weight * ce, "g_cls": ce}
