"""Inversion (polyinr.inversion): schedules by hand, losses, the recorded loss choice, a > 35 dB
inversion of the generator's own image, batch independence, pivotal tuning, and notebook 09."""
import math

import pytest
import torch

import polyinr
from polyinr.core.images import to_unit
from polyinr.evaluation.quality import psnr, ssim
from polyinr.studies.inversion import (
    invert,
    lr_schedule,
    make_loss,
    multiscale_loss,
    noise_schedule,
    pick_targets,
    pivotal_tuning,
)
from polyinr.training.backbones import BackboneWeightsError


def tiny_letters_G(seed=0):
    """A tiny letters-shaped generator (1 channel, 26 classes) whose images depend strongly on w: the
    affine heads are scaled up 3x (an untrained generator barely reacts to w) and to-RGB is rescaled so
    that images have mean 0 and std 0.5."""
    torch.manual_seed(seed)
    G = polyinr.build_generator("letters", width=16, levels=4, z_dim=8, w_dim=16, embed_dim=8).eval()
    with torch.no_grad():
        for lvl in G.synthesis.levels:
            lvl.affine.weight.mul_(3.0)
        z = torch.randn(64, G.cfg.z_dim)
        x = polyinr.render(G, G.mapping(z, torch.randint(0, 26, (64,))), 12, 12)
        s = x.std() / 0.5
        G.synthesis.to_rgb.weight.div_(s)
        G.synthesis.to_rgb.bias.sub_(x.mean() / s)
    return G


def test_lr_schedule_by_hand():
    # t = step / steps; up = min(1, t / 0.05); down = 0.5 - 0.5 cos(pi min(1, (1 - t) / 0.25))
    assert lr_schedule(0, 100) == 0.0                                   # ramp-up starts at 0
    assert lr_schedule(1, 100) == pytest.approx(0.1 * 0.2)              # t = 0.01: a fifth of the way up
    assert lr_schedule(5, 100) == pytest.approx(0.1)                    # t = 0.05: fully up
    assert lr_schedule(50, 100) == pytest.approx(0.1)
    assert lr_schedule(80, 100) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.8 * math.pi)))   # 0.0904508
    assert lr_schedule(80, 100) == pytest.approx(0.09045085, abs=1e-8)
    assert lr_schedule(90, 100) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))   # 0.0345492
    assert lr_schedule(100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_schedule(3, 10, lr=2.0, ramp_up=0.0, ramp_down=0.0) == 2.0   # both ramps off
    assert lr_schedule(2, 10, lr=1.0, ramp_up=0.5, ramp_down=0.0) == pytest.approx(0.4)


def test_noise_schedule_by_hand():
    assert noise_schedule(0, 1000) == pytest.approx(0.05)
    assert noise_schedule(375, 1000) == pytest.approx(0.05 * 0.25)        # (1 - 0.375 / 0.75)^2 = 1/4
    assert noise_schedule(750, 1000) == 0.0 and noise_schedule(900, 1000) == 0.0
    assert noise_schedule(10, 100, scale=0.0) == 0.0


def test_psnr_ssim_values():
    x = torch.zeros(2, 1, 16, 16)
    # an offset of 0.1 in [-1, 1] is 0.05 in [0, 1]: PSNR = 10 log10(1 / 0.05^2) = 26.0206 dB
    assert psnr(to_unit(x + 0.1), to_unit(x)).tolist() == pytest.approx([26.0206] * 2, abs=1e-3)
    y = torch.rand(2, 1, 16, 16) * 2 - 1
    assert ssim(to_unit(y), to_unit(y)).tolist() == pytest.approx([1.0, 1.0])
    assert psnr(to_unit(y * 5), to_unit((y * 5).clamp(-1, 1))).tolist() == [math.inf] * 2   # to_unit clamps
    assert torch.isnan(ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))).all()   # below the window


def test_multiscale_loss_by_hand():
    x, y = torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 0.5)
    # scale 1: MSE 0.25, gradients equal; scale 1/2 (4x4): 0.25; the 4x4 image is too small to pool again
    assert multiscale_loss(x, y).item() == pytest.approx(0.5)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8) * 0.1   # horizontal gradient 0.1
    # scale 1: MSE of the ramp (mean of (0.1 k)^2, k = 0..7) + horizontal gradient MSE 0.01;
    # scale 1/2: pooled ramp 0.05 + 0.2 j, gradient 0.2
    s1 = sum((0.1 * k) ** 2 for k in range(8)) / 8 + 0.01
    s2 = sum((0.05 + 0.2 * j) ** 2 for j in range(4)) / 4 + 0.04
    assert multiscale_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(s1 + s2, rel=1e-5)
    assert multiscale_loss(ramp, ramp).item() == 0.0


def test_inversion_of_generated_image_exceeds_35db():
    G = tiny_letters_G()
    gen = torch.Generator().manual_seed(1)
    c = torch.tensor([0, 5, 11, 20])
    ws_true = G.mapping(torch.randn(4, G.cfg.z_dim, generator=gen), c)
    target = polyinr.render(G, ws_true, 12, 12)
    res = invert(G, target, c, mode="w+", steps=200, loss="multiscale")
    assert res.history["psnr"][0] < 28, "the class-mean start must be far from the target"
    assert (res.psnr > 35).all(), res.psnr
    assert res.ws.shape == (4, G.cfg.levels, G.cfg.w_dim) and res.images.shape == target.shape
    assert not torch.equal(res.ws[:, 0], res.ws[:, 1])                  # W+: one code per level
    assert len(res.history["loss"]) == 200 and res.loss_info["loss"] == "multiscale"
    assert res.init == "sample_mean"                                    # w_avg of an untrained G is zero
    assert all(p.requires_grad for p in G.parameters())                 # G's flags are restored


def test_w_mode_shares_one_code_and_is_batch_independent():
    G = tiny_letters_G()
    c = torch.tensor([3, 7])
    target = polyinr.render(G, G.mapping(torch.randn(2, G.cfg.z_dim), c), 12, 12)
    kw = dict(mode="w", steps=8, loss="pixel", noise=0.0)
    both = invert(G, target, c, **kw)
    assert torch.equal(both.ws[:, 0:1].expand_as(both.ws), both.ws)     # W: every level the same w
    one = invert(G, target[1:], c[1:], **kw)
    # each target's loss only reaches its own code: inverting it alone gives the same code
    torch.testing.assert_close(one.ws[0], both.ws[1], atol=1e-5, rtol=1e-4)


def test_loss_choice_is_recorded(tmp_path):
    # offline (HF_HUB_OFFLINE=1, set in conftest) and without a local weights file, "auto" falls back
    G = tiny_letters_G()
    target = torch.zeros(1, 1, 12, 12)
    res = invert(G, target, 0, steps=2, loss="auto")
    assert res.loss_info["loss"] == "multiscale" and res.loss_info["requested"] == "auto"
    assert "tf_efficientnet_lite0" in res.loss_info["note"] and "fell back" in res.loss_info["note"]
    assert res.summary()["loss"] == "multiscale"
    with pytest.raises(BackboneWeightsError, match="backbone_weights"):
        make_loss("timm")
    assert make_loss("pixel")[1]["loss"] == "pixel"
    with pytest.raises(ValueError, match="loss"):
        make_loss("lpips")


def test_timm_perceptual_path_with_random_weights():
    fn, info = make_loss("timm", backbone="tf_efficientnet_lite0", pretrained=False, perceptual_size=32)
    assert info["loss"] == "timm" and info["perceptual"] == "tf_efficientnet_lite0" and "random" in info["note"]
    x = torch.rand(2, 1, 12, 12) * 2 - 1
    y = torch.rand(2, 1, 12, 12) * 2 - 1
    assert fn(x, x).abs().max().item() < 1e-6 and (fn(x, y) > 0).all()
    # a custom feature network (any nn.Module returning maps) is recorded by its class name
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    fn2, info2 = make_loss("timm", backbone=net, perceptual_size=16)
    assert info2["perceptual"] == "custom:Sequential" and fn2(x, y).shape == (2,)
    G = tiny_letters_G()
    res = invert(G, x, torch.tensor([1, 2]), steps=2, loss="timm", backbone=net, perceptual_size=16)
    assert res.loss_info["perceptual"] == "custom:Sequential"


def test_invalid_arguments_name_the_argument():
    G = tiny_letters_G()
    t = torch.zeros(1, 1, 12, 12)
    with pytest.raises(ValueError, match="mode"):
        invert(G, t, 0, mode="z")
    with pytest.raises(ValueError, match="target"):
        invert(G, torch.zeros(1, 3, 12, 12), 0)
    with pytest.raises(ValueError, match="c:"):
        invert(G, t, None)
    with pytest.raises(ValueError, match="steps"):
        invert(G, t, 0, steps=0)
    with pytest.raises(ValueError, match="init"):
        invert(G, t, 0, init="zeros")


def test_pivotal_tuning_improves_and_leaves_G_unchanged():
    G = tiny_letters_G()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 12), torch.linspace(0, 1, 12), indexing="ij")
    ring = torch.where((((xx - 0.5) ** 2 + (yy - 0.5) ** 2).sqrt() - 0.3).abs() < 0.1, -1.0, 1.0)
    bar = torch.where((xx - 0.4).abs() < 0.12, -1.0, 1.0)
    target = torch.stack([ring, bar])[:, None]                          # glyph-like, far from this G's images
    c = torch.tensor([1, 2])
    inv = invert(G, target, c, mode="w", steps=30, loss="pixel")
    pti = pivotal_tuning(G, inv.ws, target, steps=40, lr=3e-3, loss="pixel", locality_samples=8)
    assert (pti.psnr_after > pti.psnr_before + 1).all(), (pti.psnr_before, pti.psnr_after)
    torch.testing.assert_close(pti.psnr_before, inv.psnr)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert not torch.equal(pti.G.synthesis.to_rgb.weight, G.synthesis.to_rgb.weight)
    assert torch.equal(pti.G.mapping.fcs[0].weight, G.mapping.fcs[0].weight)   # only synthesis is tuned
    assert math.isfinite(pti.locality_psnr) and set(pti.summary()) >= {"psnr_before", "psnr_after", "locality_psnr"}


def test_pick_targets_is_class_balanced_and_reproducible():
    labels = torch.arange(5).repeat(4)                                   # 20 samples, 5 classes
    idx = pick_targets(labels, 7, seed=3)
    assert labels[idx].tolist() == [0, 1, 2, 3, 4, 0, 1] and len(set(idx.tolist())) == 7
    assert torch.equal(idx, pick_targets(labels, 7, seed=3))
    with pytest.raises(ValueError, match="n:"):
        pick_targets(labels, 21)


def test_initial_w_uses_the_tracked_class_mean_and_falls_back_to_samples():
    from polyinr.studies.inversion import initial_w, w_statistics
    G = polyinr.build_generator("letters", width=16, levels=2)
    c = torch.tensor([3, 1, 3])
    w, how = initial_w(G, c, batch=3)                            # untracked (all-zero) w_avg: sample means
    ref, _ = w_statistics(G, c)
    assert how == "sample_mean" and torch.equal(w, ref) and torch.equal(w[0], w[2])
    # the class-k sample mean does not depend on the other targets of the batch
    assert torch.equal(w_statistics(G, torch.tensor([3]))[0][0], ref[0])
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg))
    w, how = initial_w(G, c, batch=3)
    assert how == "class_mean" and torch.equal(w, G.mapping.w_avg[c])
    w[0].add_(1.0)                                               # a copy: w_avg itself is untouched
    assert torch.equal(G.mapping.w_avg[3], initial_w(G, c, batch=3)[0][0])
