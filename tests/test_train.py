"""Training recipe: losses by hand, augmentation, discriminators, steps, determinism, resume, safety."""
import json
import math

import pytest
import torch

import polyinr
from polyinr.core.checkpoint import load_checkpoint
from polyinr.core.config import TrainConfig, get_train_preset, parse_policy
from polyinr.train import main as train_cli
from polyinr.training import augment as aug
from polyinr.training import loop as T
from polyinr.training import steps as S
from polyinr.training.backbones import BackboneWeightsError
from polyinr.training.discriminator import (
    ConvDiscriminator,
    FeatureNetwork,
    ProjectedDiscriminator,
    RandomProjection,
    build_D,
    minibatch_std,
)
from polyinr.training.losses import (
    classifier_guidance_loss,
    d_hinge_loss,
    d_ns_loss,
    g_hinge_loss,
    g_ns_loss,
    mode_seeking_loss,
    r1_penalty,
)

TINY = dict(g_overrides={"width": 16, "levels": 3}, resolution=8, batch=4, kimg=0.016, tick_kimg=0.008,
            d_width=8, d_max_width=16, precision="fp32", deterministic=True, grid_rows=1)


def tiny(**kw) -> TrainConfig:
    return get_train_preset("letters", **{**TINY, **kw})


# ------------------------------------------------------------------------------------------- losses

def test_hinge_losses_by_hand():
    real = torch.tensor([[2.0], [0.5], [-1.0]])
    fake = torch.tensor([[-2.0], [0.0], [1.5]])
    d = d_hinge_loss(real, fake)
    assert d["d_real"].item() == pytest.approx((0 + 0.5 + 2.0) / 3)      # relu(1 - real)
    assert d["d_fake"].item() == pytest.approx((0 + 1.0 + 2.5) / 3)      # relu(1 + fake)
    assert d["loss"].item() == pytest.approx(2.0)
    assert g_hinge_loss(fake)["loss"].item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)


def test_non_saturating_losses_by_hand():
    real = torch.tensor([[2.0], [0.0]])
    fake = torch.tensor([[-1.0], [3.0]])
    sp = lambda v: math.log1p(math.exp(v))   # noqa: E731  softplus
    d = d_ns_loss(real, fake)
    assert d["d_real"].item() == pytest.approx((sp(-2.0) + sp(0.0)) / 2)
    assert d["d_fake"].item() == pytest.approx((sp(-1.0) + sp(3.0)) / 2)
    assert d["loss"].item() == pytest.approx(d["d_real"].item() + d["d_fake"].item())
    assert g_ns_loss(fake)["loss"].item() == pytest.approx((sp(1.0) + sp(-3.0)) / 2)


def test_r1_penalty_of_a_linear_and_a_quadratic_critic():
    """D(x) = <a, x>: grad = a for every sample, so R1 = gamma / 2 |a|^2. D(x) = sum x^2: grad = 2x."""
    a = torch.tensor([1.0, -2.0, 0.5, 3.0])
    x = torch.randn(5, 1, 2, 2, requires_grad=True)
    out = r1_penalty((x.flatten(1) * a).sum(1, keepdim=True), x, gamma=0.4)
    assert out["r1"].item() == pytest.approx(a.square().sum().item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.2 * a.square().sum().item(), rel=1e-6)
    x = torch.tensor([[[[1.0, 2.0]]], [[[0.0, -1.0]]]], requires_grad=True)
    out = r1_penalty(x.square().flatten(1).sum(1, keepdim=True), x, gamma=1.0)
    assert out["r1"].item() == pytest.approx((4 * 5 + 4 * 1) / 2)            # mean of |2x|^2 over the 2 samples
    w = torch.tensor(2.0, requires_grad=True)                                # differentiable: D can train on it
    r1_penalty((w * x).flatten(1).sum(1, keepdim=True), x, 1.0)["loss"].backward()
    assert w.grad.item() == pytest.approx(0.5 * 2 * 2 * 2)                   # d/dw (w^2 * 2 / 2) = 2w


def test_mode_seeking_by_hand():
    x = torch.tensor([0.0, 2.0, 1.0, 1.0, 5.0]).view(5, 1, 1, 1)         # pairs (0, 1), (2, 3); the odd 5th is left out
    z = torch.tensor([[0.0, 0.0], [1.0, 3.0], [1.0, 1.0], [0.0, 1.0], [9.0, 9.0]])
    out = mode_seeking_loss(x, z, weight=0.5)
    r01, r23 = 2 / ((1 + 3) / 2), 0 / ((1 + 0) / 2)                      # per pair: |x_a - x_b| / mean |z_a - z_b|
    assert out["g_ms"].item() == pytest.approx((r01 + r23) / 2)
    assert out["loss"].item() == pytest.approx(0.5 * (1 / (r01 + 1e-5) + 1 / (r23 + 1e-5)) / 2)
    halves = [mode_seeking_loss(x[i:i + 2], z[i:i + 2], 0.5)["loss"] for i in (0, 2)]      # split-invariant
    assert out["loss"].item() == pytest.approx(sum(h.item() for h in halves) / 2)


def test_minibatch_std_by_hand():
    x = torch.zeros(4, 2, 1, 1)
    x[:, 0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 5.0])           # groups of 2: samples (0, 1) and (2, 3)
    y = minibatch_std(x, 2)
    assert y.shape == (4, 3, 1, 1) and torch.equal(y[:, :2], x)
    s01, s23 = 0.5 / 2, 1.5 / 2                                      # std across the group, mean over 2 channels
    assert y[:, 2, 0, 0].tolist() == pytest.approx([s01, s01, s23, s23], abs=1e-4)
    torch.testing.assert_close(torch.cat([minibatch_std(x[:2], 2), minibatch_std(x[2:], 2)]), y)   # split-invariant
    with pytest.raises(ValueError, match="d_mbstd: the group size 4 must divide the batch seen by D \\(6\\)"):
        minibatch_std(torch.zeros(6, 1, 2, 2), 4)
    D = ConvDiscriminator(1, 16, 3, width=8, max_width=16, mbstd=4).eval()
    same = torch.randn(1, 1, 16, 16).repeat(4, 1, 1, 1)
    varied = torch.cat([same[:1], torch.randn(3, 1, 16, 16)])
    with torch.no_grad():   # the first sample's logit depends on the rest of the batch only through the std channel
        assert not torch.allclose(D(same, torch.zeros(4, dtype=torch.long))[0], D(varied, torch.zeros(4, dtype=torch.long))[0])


def test_loss_options_train_and_are_checked(tmp_path):
    stats = T.read_stats(T.train(tiny(loss="ns", r1_gamma=1.0, r1_every=2, d_mbstd=2, ms_weight=0.1), tmp_path / "run",
                                 progress=False))
    assert len(stats) == 2 and all(math.isfinite(s["r1"]) and s["r1"] > 0 and s["g_ms"] > 0 for s in stats)
    for bad, message in [({"loss": "wgan"}, "loss must be one of"), ({"r1_gamma": -1.0}, "r1_gamma must be"),
                         ({"r1_every": 0}, "r1_every must be"), ({"d_mbstd": -1}, "d_mbstd must be"),
                         ({"ms_weight": 1.0, "batch": 5}, "must be even"), ({"ms_weight": -1.0}, "ms_weight must be")]:
        with pytest.raises(ValueError, match=message):
            tiny(**bad)


def test_classifier_guidance_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    c = torch.tensor([0, 2])
    ce = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(1 / (2 + math.e))) / 2
    out = classifier_guidance_loss(logits, c, weight=0.5)
    assert out["g_cls"].item() == pytest.approx(ce, rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * ce, rel=1e-6)


# ------------------------------------------------------------------------------------- augmentation

def test_diffaugment_shapes_gradients_and_identity():
    x = torch.randn(5, 3, 16, 12, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    y = aug.diffaugment(x, parse_policy("color,translation,cutout"), gen)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert aug.diffaugment(x, parse_policy("none"), gen) is x
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="diffaugment"):
        parse_policy("color,flip")


def test_translation_is_an_integer_shift_with_zero_fill():
    x = torch.zeros(6, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0
    y = aug.diffaugment(x, ("translation",), torch.Generator().manual_seed(1))
    for i in range(6):
        pos = torch.nonzero(y[i, 0])
        assert len(pos) == 1 and y[i].sum() == 1.0
        dy, dx = (pos[0] - torch.tensor([8, 8])).tolist()
        assert abs(dy) <= 2 and abs(dx) <= 2                       # ratio 1/8 of 16 px


def test_cutout_zeroes_one_square():
    x = torch.ones(8, 2, 20, 20)
    y = aug.diffaugment(x, ("cutout",), torch.Generator().manual_seed(0))
    for i in range(8):
        zero = (y[i, 0] == 0)
        rows, cols = torch.nonzero(zero.any(1)).flatten(), torch.nonzero(zero.any(0)).flatten()
        assert zero.sum() == len(rows) * len(cols) <= 16            # one (clipped) square of side 0.2 * 20
        assert torch.equal(y[i, 0], y[i, 1])


def test_split_batches_are_augmented_like_the_whole_batch():
    x = torch.randn(6, 3, 12, 12)
    policy = parse_policy("color,translation,cutout")
    params = aug.sample_params(policy, 6, 12, 12, torch.Generator().manual_seed(5))
    whole = aug.apply_params(x, params)
    halves = torch.cat([aug.apply_params(x[s], aug.slice_params(params, s)) for s in (slice(0, 2), slice(2, 6))])
    assert torch.allclose(whole, halves, atol=1e-6)


def test_gaussian_blur_and_schedule():
    x = torch.randn(2, 3, 9, 9)
    assert aug.gaussian_blur(x, 0.0) is x
    delta = torch.zeros(1, 1, 15, 15)
    delta[0, 0, 7, 7] = 1
    b = aug.gaussian_blur(delta, 1.5)
    assert b.sum().item() == pytest.approx(1.0, abs=1e-5) and b[0, 0, 7, 7] < 0.2
    assert torch.allclose(aug.gaussian_blur(torch.full((1, 1, 8, 8), 0.3), 2.0), torch.full((1, 1, 8, 8), 0.3))
    assert [aug.blur_sigma(n, 2.0, 300) for n in (0, 150_000, 300_000, 400_000)] == [2.0, 1.0, 0.0, 0.0]


# ----------------------------------------------------------------------------------- discriminators

@pytest.mark.parametrize("classes", [0, 5])
def test_conv_discriminator(classes):
    D = ConvDiscriminator(1, 16, classes, width=8, max_width=16)
    c = torch.tensor([0, 4, 2]) if classes else None
    x = torch.randn(3, 1, 16, 16)
    out = D(x, c)
    assert out.shape == (3, 1) and torch.isfinite(out).all()
    if classes:   # projection: logits(c) - logits(c') = <embed(c) - embed(c'), f>, f the summed features
        c2 = torch.tensor([1, 1, 1])
        D.eval()   # no power iteration between the calls
        with torch.no_grad():
            f = torch.nn.functional.leaky_relu(D.blocks(x), 0.2).sum(dim=(2, 3))
            want = ((D.embed(c) - D.embed(c2)) * f).sum(1, keepdim=True)
            torch.testing.assert_close(D(x, c) - D(x, c2), want, rtol=1e-4, atol=1e-4)
        assert not torch.equal(D(x, c), D(x, c2))
    with pytest.raises(ValueError, match="resolution"):
        ConvDiscriminator(1, 12)
    from torch.nn.utils import parametrize
    plain = ConvDiscriminator(1, 16, classes, width=8, max_width=16, sn=False)
    assert parametrize.is_parametrized(D.out) and not any(parametrize.is_parametrized(m) for m in plain.modules())
    assert plain(x, c).shape == (3, 1)


@pytest.mark.parametrize("classes", [0, 7])
def test_projected_discriminator_random_backbones(classes):
    D = ProjectedDiscriminator(classes, backbones=("tf_efficientnet_lite0", "deit_tiny_distilled_patch16_224"),
                               input_size=64, pretrained=False)
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    out = D(x, torch.tensor([1, 6]) if classes else None)
    assert out.dim() == 2 and out.shape[0] == 2 and torch.isfinite(out).all()
    out.mean().backward()
    assert x.grad.abs().sum() > 0                                    # gradients reach the images
    trainable = {n.split(".")[0] for n, p in D.named_parameters() if p.requires_grad}
    assert trainable == {"heads"}                                    # backbones and projections frozen


def test_random_projection_is_identical_for_the_same_seed():
    a, b = RandomProjection([24, 40, 112, 320], seed=3), RandomProjection([24, 40, 112, 320], seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = RandomProjection([24, 40, 112, 320], seed=4)
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_projected_discriminator_offline_error():
    with pytest.raises(BackboneWeightsError, match="backbone_weights") as e:
        ProjectedDiscriminator(0, backbones=("tf_efficientnet_lite0",), pretrained=True)
    assert "tf_efficientnet_lite0" in str(e.value) and "network access" in str(e.value)


def test_backbone_weights_from_a_local_file(tmp_path):
    import timm
    ref = timm.create_model("tf_efficientnet_lite0")
    torch.save(ref.state_dict(), tmp_path / "tf_efficientnet_lite0.pth")
    net = FeatureNetwork("tf_efficientnet_lite0", pretrained=True, backbone_weights=str(tmp_path), input_size=64)
    assert torch.equal(net.net.conv_stem.weight, ref.conv_stem.weight)
    with pytest.raises(FileNotFoundError, match="backbone_weights"):
        FeatureNetwork("tf_efficientnet_lite0", True, str(tmp_path / "missing"), 64)


# ------------------------------------------------------------------------------------------- steps

def test_one_step_changes_G_and_D_with_finite_losses():
    torch.manual_seed(0)
    cfg = tiny()
    G = polyinr.build_generator("letters", width=16, levels=3, resolution=8)
    D = build_D(cfg, 1, 26)
    opt_G = torch.optim.Adam(S.g_param_groups(G, cfg), lr=cfg.lr_g, betas=cfg.betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    g0 = [p.detach().clone() for p in G.parameters()]
    d0 = [p.detach().clone() for p in D.parameters()]
    ctx = S.StepContext(policy=parse_policy(cfg.diffaugment), aug_gen=torch.Generator().manual_seed(0))
    real, c = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 3])
    terms = S.d_step(G, D, opt_D, real, c, torch.randn(4, G.cfg.z_dim), c, ctx)
    terms.update(S.g_step(G, D, opt_G, torch.randn(4, G.cfg.z_dim), c, ctx))
    assert all(math.isfinite(v) for v in terms.values()) and {"d_loss", "g_loss"} <= set(terms)
    assert any(not torch.equal(a, p) for a, p in zip(g0, G.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(d0, D.parameters()))
    assert G.mapping.w_avg.abs().sum() > 0                           # w_avg tracked during the D step


class _PlainD(torch.nn.Module):
    """A discriminator without spectral norm (whose power iteration advances per forward)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 1)
        self.embed = torch.nn.Embedding(26, 64)

    def forward(self, x, c):
        f = x.flatten(1)
        return self.lin(f) + (self.embed(c) * f).sum(1, keepdim=True)


def test_gradient_accumulation_equals_the_full_batch():
    results = []
    for micro in (None, 2):
        torch.manual_seed(0)
        G = polyinr.build_generator("letters", width=16, levels=3, resolution=8)
        D = _PlainD()
        opt_G = torch.optim.SGD(G.parameters(), lr=0.1)
        opt_D = torch.optim.SGD(D.parameters(), lr=0.1)
        policy = parse_policy("color,translation,cutout")
        ctx = S.StepContext(policy=policy, micro=micro)
        gen = torch.Generator().manual_seed(1)
        real, c = torch.rand(6, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 3, 4, 5])
        z = torch.randn(6, G.cfg.z_dim, generator=gen)
        pr, pf, pg = (aug.sample_params(policy, 6, 8, 8, gen) for _ in range(3))
        terms = S.d_step(G, D, opt_D, real, c, z, c, ctx, pr, pf)
        terms.update(S.g_step(G, D, opt_G, z, c, ctx, pg))
        results.append((terms, [p.detach().clone() for p in list(G.parameters()) + list(D.parameters())]))
    (t_full, p_full), (t_acc, p_acc) = results
    assert all(t_full[k] == pytest.approx(t_acc[k], rel=1e-5) for k in t_full)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(p_full, p_acc))


def test_grad_scaler_steps_equal_unscaled_steps():
    """The fp16 path scales losses by 2**16 and unscales before the step: the update must be the
    unscaled one (exercised here with a CPU scaler in fp32), and a step with inf gradients is skipped."""
    results = []
    for scaled in (False, True):
        torch.manual_seed(0)
        G = polyinr.build_generator("letters", width=16, levels=3, resolution=8)
        D = _PlainD()
        opt_G = torch.optim.SGD(G.parameters(), lr=0.1)
        opt_D = torch.optim.SGD(D.parameters(), lr=0.1)
        scalers = {"D": torch.amp.GradScaler("cpu"), "G": torch.amp.GradScaler("cpu")} if scaled else None
        ctx = S.StepContext(scalers=scalers)
        gen = torch.Generator().manual_seed(1)
        real, c = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 3])
        z = torch.randn(4, G.cfg.z_dim, generator=gen)
        S.d_step(G, D, opt_D, real, c, z, c, ctx)
        S.g_step(G, D, opt_G, z, c, ctx)
        results.append([p.detach().clone() for p in list(G.parameters()) + list(D.parameters())])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(*results))
    assert scalers["G"].get_scale() == 2.0 ** 16
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=1.0)
    ctx = S.StepContext(scalers={"G": torch.amp.GradScaler("cpu")})
    ctx.backward((p * float("inf")).sum(), "G")
    ctx.step(opt, "G")
    assert torch.equal(p.detach(), torch.ones(3)) and ctx.scalers["G"].get_scale() == 2.0 ** 15


def test_fp16_needs_cuda_and_only_fp16_gets_scalers():
    with pytest.raises(ValueError, match="precision"):
        S.autocast(tiny(precision="fp16"), torch.device("cpu"))
    assert S.grad_scalers(tiny(precision="bf16"), torch.device("cpu")) is None
    assert set(S.grad_scalers(tiny(precision="fp16"), torch.device("cpu"))) == {"D", "G"}


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_native(monkeypatch, native):
    """precision="auto" autocasts to bf16 on a device with a native bf16 path and runs fp32 elsewhere (an
    AVX2-only CPU computes bf16 through reference kernels, an order of magnitude slower than fp32)."""
    monkeypatch.setattr(S, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert S.precision_of("auto", cpu) == ("bf16" if native else "fp32")
    assert S.precision_of("fp32", cpu) == "fp32" and S.precision_of("bf16", cpu) == "bf16"
    ctx = S.autocast(tiny(precision="auto"), cpu)
    with ctx:
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if native else torch.float32)
    assert S.grad_scalers(tiny(precision="auto"), cpu) is None
    with pytest.raises(ValueError, match="precision"):
        tiny(precision="bf8")


def test_head_learning_rate_groups():
    cfg = tiny(head_lr_mult=0.1)
    G = polyinr.build_generator("letters", width=16, levels=3)
    groups = S.g_param_groups(G, cfg)
    assert groups[1]["lr"] == pytest.approx(cfg.lr_g * 0.1)
    assert sum(p.numel() for g in groups for p in g["params"]) == polyinr.count_parameters(G)
    assert any(p is G.synthesis.levels[2].affine.weight for p in groups[1]["params"])


def test_ema_half_life():
    G, G_ema = (polyinr.build_generator("letters", width=16, levels=2) for _ in range(2))
    beta = S.update_ema(G_ema, G, cur_nimg=10**9, batch=1000, ema_kimg=1.0, ema_rampup=None)
    assert beta == pytest.approx(0.5)                                # one half-life per 1000 images
    # a quarter half-life: G_ema <- beta * G_ema + (1 - beta) * G with beta = 0.5 ** 0.25; buffers copied
    G.mapping.w_avg.normal_()
    old = [p.detach().clone() for p in G_ema.parameters()]
    beta = S.update_ema(G_ema, G, cur_nimg=10**9, batch=250, ema_kimg=1.0, ema_rampup=None)
    assert beta == pytest.approx(0.5 ** 0.25)
    for o, p, q in zip(old, G.parameters(), G_ema.parameters()):
        torch.testing.assert_close(q, beta * o + (1 - beta) * p.detach())
    assert torch.equal(G_ema.mapping.w_avg, G.mapping.w_avg)
    # ramp-up: early on the half-life is rampup * images seen (here 0.05 * 2000 = 100 images)
    assert S.update_ema(G_ema, G, cur_nimg=2000, batch=100, ema_kimg=1.0, ema_rampup=0.05) == pytest.approx(0.5)


# -------------------------------------------------------------------------------------------- runs

def _weights(path):
    ck = load_checkpoint(path)
    return {k: v for part in ("G", "G_ema", "D") for k, v in ((f"{part}.{n}", t) for n, t in ck[part].items())}


def test_run_folder_contents(tmp_path):
    run = T.train(tiny(), tmp_path / "run", progress=False)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["resolution"] == 8 and cfg["seed"] == 0 and "git_commit" in cfg["provenance"]
    assert cfg["precision"] == "fp32"                                # the precision the run used
    stats = T.read_stats(run)
    assert [s["tick"] for s in stats] == [1, 2] and all(math.isfinite(s["d_loss"]) for s in stats)
    assert {"kimg", "img_per_s", "seconds", "g_loss"} <= set(stats[0])
    # two ticks of 8 images each: one grid pair per tick, named by the images seen
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "fakes000000.008.png", "fakes000000.008_x4.png", "fakes000000.016.png", "fakes000000.016_x4.png", "reals.png"]
    G = polyinr.load_generator(run / "generator.pt")
    assert G.cfg.width == 16 and G.cfg.num_classes == 26 and G.cfg.img_channels == 1
    assert load_checkpoint(run / "latest.pt")["cur_nimg"] == 16
    # the run's discriminator, reusable on its own: the checkpoint's weights, frozen, in eval mode
    D = polyinr.load_discriminator(run / "latest.pt")
    saved = load_checkpoint(run / "latest.pt")["D"]
    assert D.state_dict().keys() == saved.keys() and all(torch.equal(D.state_dict()[k], saved[k]) for k in saved)
    assert not D.training and not any(p.requires_grad for p in D.parameters())
    x, c = torch.rand(3, 1, 8, 8) * 2 - 1, torch.tensor([0, 5, 25])
    assert D(x, c).shape == (3, 1) and torch.equal(D(x, c), D(x, c))     # no power iteration in eval mode
    with pytest.raises(ValueError, match="no discriminator"):
        polyinr.load_discriminator(run / "generator.pt")


def test_same_seed_same_weights(tmp_path):
    a = _weights(T.train(tiny(), tmp_path / "a", progress=False) / "latest.pt")
    b = _weights(T.train(tiny(), tmp_path / "b", progress=False) / "latest.pt")
    c = _weights(T.train(tiny(seed=1), tmp_path / "c", progress=False) / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    full = _weights(T.train(tiny(kimg=0.032), tmp_path / "full", progress=False) / "latest.pt")
    # crash after 6 of 8 steps: the checkpoint of the tick at step 4 survives, then resume
    T.train(tiny(kimg=0.032), tmp_path / "crash", progress=False, stop_after_steps=6)
    assert load_checkpoint(tmp_path / "crash" / "latest.pt")["step"] == 4
    resumed = _weights(T.train(tiny(kimg=0.032), tmp_path / "crash", resume=tmp_path / "crash", progress=False)
                       / "latest.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert [s["step"] for s in T.read_stats(tmp_path / "crash")] == [2, 4, 6, 8]


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = S.D_LOSSES["ns"]                                      # the letters recipe's loss

    def flaky(r, f):
        calls["n"] += 1
        out = real_loss(r, f)
        if calls["n"] > 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setitem(S.D_LOSSES, "ns", flaky)
    with pytest.raises(S.NonFiniteLossError, match="non-finite loss"):
        T.train(tiny(kimg=0.032), tmp_path / "run", progress=False)
    ck = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert ck["step"] == 2 and all(torch.isfinite(t).all() for t in ck["G"].values())


def test_progressive_stage_keeps_G_and_starts_a_fresh_D(tmp_path):
    T.train(tiny(), tmp_path / "s8", progress=False)
    g8 = load_checkpoint(tmp_path / "s8" / "latest.pt")["G"]
    run = T.train(tiny(resolution=16, kimg=0.004), tmp_path / "s16", resume=tmp_path / "s8", progress=False)
    ck = load_checkpoint(run / "latest.pt")
    assert ck["cur_nimg"] == 4 and ck["train_config"]["resolution"] == 16
    assert json.loads((run / "config.json").read_text())["stage_from"]["resolution"] == 8
    # one Adam step (beta1 = 0) moves each stored parameter by at most lr: stage 2 started from stage 1's G
    params = {k for k, _ in polyinr.build_generator("letters", width=16, levels=3).named_parameters()}
    step = max((ck["G"][k] - g8[k]).abs().max().item() for k in params)
    assert 0 < step <= tiny().lr_g * 1.001
    torch.manual_seed(123)
    fresh = polyinr.build_generator("letters", width=16, levels=3).state_dict()
    assert max((fresh[k] - g8[k]).abs().max().item() for k in params) > 100 * tiny().lr_g
    assert polyinr.load_generator(run / "generator.pt").cfg.resolution == 16


def test_resume_rejects_another_model(tmp_path):
    T.train(tiny(), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        T.train(tiny(g_overrides={"width": 8, "levels": 3}), tmp_path / "b", resume=tmp_path / "a", progress=False)
    with pytest.raises(FileNotFoundError, match="resume"):
        T.train(tiny(), tmp_path / "c", resume=tmp_path / "nothing", progress=False)


@pytest.mark.parametrize("field,value", [("batch", 0), ("discriminator", "mlp"), ("precision", "fp8"),
                                         ("lr_g", -1.0), ("preset", "cifar"), ("betas", (0.0, 1.5)),
                                         ("g_overrides", {"depth": 3}), ("diffaugment", "flip")])
def test_bad_train_config(field, value):
    with pytest.raises(ValueError, match=field if field not in ("g_overrides", "diffaugment") else "unknown"):
        tiny(**{field: value})


def test_cli(tmp_path, capsys):
    assert train_cli(["--run-dir", str(tmp_path / "cli"), "--no-progress", "--set", "g_overrides", "{width: 16, levels: 3}",
                   "--resolution", "8", "--batch", "4", "--kimg", "0.008", "--set", "tick_kimg", "0.004",
                   "--set", "d_width", "8", "--set", "d_max_width", "16", "--precision", "fp32"]) == 0
    assert polyinr.load_generator(tmp_path / "cli" / "generator.pt").cfg.width == 16


def test_classifier_guidance_term_is_logged(tmp_path):
    run = T.train(tiny(cls_weight=0.5, cls_model="letters", kimg=0.008), tmp_path / "cls", progress=False)
    stats = T.read_stats(run)
    assert len(stats) == 1 and all("g_cls" in s and math.isfinite(s["g_cls"]) and s["g_cls"] > 0 for s in stats)


def test_bf16_autocast_matches_fp32_within_tolerance():
    """bf16 autocast (the letters default) stays within 3 % of fp32 on the output and keeps the
    direction of the gradients (cosine > 0.99): the stated tolerance of mixed precision here."""
    torch.manual_seed(0)
    G = polyinr.build_generator("letters")
    z, c = torch.randn(8, G.cfg.z_dim), torch.arange(8)
    outs, grads = [], []
    for dtype in (None, torch.bfloat16):
        G.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            img = G(z, c)
        img.float().square().mean().backward()
        outs.append(img.detach().float())
        grads.append(torch.cat([p.grad.flatten() for p in G.parameters()]))
    rel = (outs[1] - outs[0]).norm() / outs[0].norm()
    cos = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert 0 < rel < 0.03, rel   # > 0: autocast really ran in bf16
    assert cos > 0.99, cos


def test_sampler_epochs_are_permutations_and_state_resumes():
    s = T.Sampler(5, seed=3)
    first = s.next(7)                                          # crosses into the second epoch
    assert sorted(first[:5].tolist()) == list(range(5)) and s.pos == 2
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.state_dict().items()}
    rest = s.next(8)
    assert sorted(torch.cat([first[5:], rest[:3]]).tolist()) == list(range(5))   # epoch 2 complete
    r = T.Sampler(5, seed=0)
    r.load_state_dict(state)
    assert torch.equal(r.next(8), rest)                        # resumes the same stream


def test_grid_and_training_latents():
    cfg = polyinr.get_preset("letters", width=16, levels=2)
    z, c, cols = T.grid_latents(cfg, rows=2, seed=5, device="cpu")
    assert cols == 26 and z.shape == (52, cfg.z_dim) and torch.equal(c, torch.arange(26).repeat(2))
    # row r uses seed 5 * 1000 + r in every column
    assert torch.equal(z[27], torch.randn(cfg.z_dim, generator=torch.Generator().manual_seed(5001)))
    assert torch.equal(z[0], z[25]) and not torch.equal(z[0], z[26])
    labels = torch.tensor([7, 7, 7, 2])
    z, c = T.sample_latents(torch.Generator().manual_seed(0), 400, cfg, labels, "cpu")
    assert z.shape == (400, cfg.z_dim) and set(c.tolist()) == {2, 7}
    assert 250 < int((c == 7).sum()) < 350                     # classes follow the label distribution (3:1)


def test_resolve_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "latest.pt").write_bytes(b"x")
    assert T.resolve_resume(tmp_path / "run") == tmp_path / "run" / "latest.pt"
    assert T.resolve_resume(tmp_path / "run" / "latest.pt") == tmp_path / "run" / "latest.pt"
    with pytest.raises(FileNotFoundError, match="resume"):
        T.resolve_resume(tmp_path / "nothing")


def test_load_discriminator_restores_frozen_feature_networks(tmp_path):
    """A projected D is rebuilt without downloading anything: its backbone weights come from the checkpoint."""
    cfg = tiny(discriminator="projected", backbones=("tf_efficientnet_lite0",), d_input_size=32, pretrained=False)
    torch.manual_seed(123)
    D = build_D(cfg, 1, 26)
    G = polyinr.build_generator("letters", width=16, levels=2, resolution=8)
    path = polyinr.save_checkpoint(tmp_path / "latest.pt", G, D=D.state_dict(), train_config=cfg.to_dict())
    torch.manual_seed(0)                                                  # a different random init inside
    E = polyinr.load_discriminator(path)
    assert all(torch.equal(E.state_dict()[k], v) for k, v in D.state_dict().items())
    x, c = torch.rand(2, 1, 8, 8) * 2 - 1, torch.tensor([1, 2])
    torch.testing.assert_close(E(x, c), D.eval()(x, c))
