"""Single-signal INRs (polyinr.inr): curvature, parameter budgets, overfitting, helpers, notebook 00."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import polyinr
from polyinr.core.images import to_unit
from polyinr.evaluation.quality import psnr
from polyinr.studies import inr

BASELINES = ("relu", "pe", "ff", "siren")


class _Monomial(nn.Module):
    """f(x, y) = x^2 y: Hessian [[2y, 2x], [2x, 0]] (checks input_hessian itself)."""

    def forward(self, v):
        return (v[:, :1] ** 2 * v[:, 1:])


def test_input_hessian_matches_a_hand_computed_polynomial():
    v = torch.rand(7, 2, dtype=torch.float64)
    H = inr.input_hessian(_Monomial(), v)
    x, y = v[:, 0], v[:, 1]
    ref = torch.stack([torch.stack([2 * y, 2 * x], -1), torch.stack([2 * x, torch.zeros_like(x)], -1)], -2)
    assert H.shape == (7, 1, 2, 2)
    assert torch.allclose(H[:, 0], ref)


def test_relu_mlp_input_hessian_is_zero():
    m = inr.relu_mlp(out_channels=3, width=32, depth=4).double()
    pts = torch.rand(500, 2, dtype=torch.float64)
    H = inr.input_hessian(m, pts)
    assert H.shape == (500, 3, 2, 2)
    assert torch.count_nonzero(H) == 0
    # ... while the first derivative is not: the network is piecewise linear, not constant
    assert inr.derivative_along_x(m, pts, order=1).abs().max() > 0


@pytest.mark.parametrize("pure", [False, True])
def test_polyinr_input_hessian_is_not_zero(pure):
    m = inr.poly_inr(out_channels=1, width=16, levels=4, pure=pure).double()
    H = inr.input_hessian(m, torch.rand(200, 2, dtype=torch.float64))
    nonzero = (H != 0).any(-1).any(-1).any(-1)
    assert nonzero.all()
    assert H.abs().mean() > 1e-3


def test_two_level_identity_polyinr_has_a_constant_nonzero_hessian():
    # pure form, slope 1: a polynomial of degree 2, so its Hessian is the same at every point
    m = inr.poly_inr(out_channels=1, width=8, levels=2, pure=True, slope=1.0).double()
    H = inr.input_hessian(m, torch.rand(50, 2, dtype=torch.float64))[:, 0]
    assert torch.allclose(H, H[:1].expand_as(H), atol=1e-10)
    assert H[0].abs().max() > 1e-3


@pytest.mark.parametrize("name", inr.MODEL_NAMES)
@pytest.mark.parametrize("budget,channels", [(20_000, 1), (200_000, 3)])
def test_every_model_meets_its_parameter_budget(name, budget, channels):
    m = inr.build_inr(name, budget, channels)
    n = polyinr.count_parameters(m)
    assert abs(n - budget) <= 0.05 * budget
    assert m(torch.rand(5, 2)).shape == (5, channels)
    # the width is the closest one: one step either way is not closer
    for w in (m.width - 1, m.width + 1):
        with torch.device("meta"):
            other = polyinr.count_parameters(inr.make_inr(name, channels, width=w))
        assert abs(other - budget) >= abs(n - budget)


def test_budget_errors_name_the_argument():
    with pytest.raises(ValueError, match="budget"):
        inr.build_inr("polyinr", 50, 3)                  # the heads alone are larger
    with pytest.raises(ValueError, match="budget"):
        inr.build_inr("relu", 0, 3)
    with pytest.raises(ValueError, match="name"):
        inr.build_inr("mlp", 10_000, 3)


def test_parameter_counts_by_hand():
    w, d, C = 10, 3, 2
    assert polyinr.count_parameters(inr.relu_mlp(C, w, d)) == (2 * w + w) + (d - 1) * (w * w + w) + (w * C + C)
    ff = inr.ff_mlp(C, w, d, n_features=16)
    assert polyinr.count_parameters(ff) == (32 * w + w) + (d - 1) * (w * w + w) + (w * C + C)   # B is a fixed buffer
    assert ff.encoding.B.requires_grad is False
    pe = inr.pe_mlp(C, w, d, n_freqs=3)
    assert polyinr.count_parameters(pe) == ((2 + 12) * w + w) + (d - 1) * (w * w + w) + (w * C + C)
    p = inr.poly_inr(C, width=w, levels=3, pure=True, w_dim=4)
    n_synth = 3 * (4 * 3 * w + 3 * w + w * w + w) + (w * C + C)
    assert polyinr.count_parameters(p) == n_synth + 3 * 4                           # ws [1, L, w_dim] counts too
    assert polyinr.count_parameters(p) == polyinr.count_parameters(p.synthesis) + p.ws.numel()


def test_encodings_by_hand():
    pe = inr.PositionalEncoding(2)
    p = torch.tensor([[0.25, -0.5]])
    ref = [0.25, -0.5, math.sin(math.pi * 0.25), math.sin(-math.pi * 0.5), math.sin(2 * math.pi * 0.25),
           math.sin(-2 * math.pi * 0.5), math.cos(math.pi * 0.25), math.cos(-math.pi * 0.5),
           math.cos(2 * math.pi * 0.25), math.cos(-2 * math.pi * 0.5)]
    assert torch.allclose(pe(p), torch.tensor([ref]), atol=1e-6)
    dense = inr.PositionalEncoding(128, include_input=False, max_log2=6.0)
    assert dense.out_features(2) == 512
    assert torch.allclose(dense.freqs[[0, -1]] / math.pi, torch.tensor([1.0, 64.0]))
    ff = inr.FourierFeatures(2, 4096, sigma=10.0, seed=3)
    assert abs(ff.B.std().item() - 10.0) < 0.3
    assert torch.equal(ff.B, inr.FourierFeatures(2, 4096, sigma=10.0, seed=3).B)   # fixed by the seed
    v = torch.rand(3, 2)
    arg = 2 * math.pi * v @ ff.B.T
    assert torch.allclose(ff(v), torch.cat([arg.cos(), arg.sin()], -1))


def test_siren_initialisation_bounds():
    m = inr.siren(out_channels=1, width=64, depth=3)
    first, *rest = [layer.linear.weight for layer in m.hidden]
    assert first.abs().max() <= 1 / 2 and first.abs().max() > 0.4           # U(-1/in, 1/in), in = 2
    for w in rest + [m.out.weight]:
        bound = math.sqrt(6 / 64) / 30
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert all(layer.omega_0 == 30.0 for layer in m.hidden)


def test_every_model_maps_the_same_pixel_coordinates():
    # relu / pe / siren see 2v - 1, ff sees v, Poly-INR sees coord_range
    v = torch.tensor([[0.0, 1.0], [0.5, 0.25]])
    seen = {}
    relu = inr.relu_mlp(1, 4, 1)
    relu.mlp.hidden[0].register_forward_hook(lambda mod, args, out: seen.__setitem__("relu", args[0]))
    relu(v)
    assert torch.equal(seen["relu"], 2 * v - 1)
    pe = inr.pe_mlp(1, 4, 1, n_freqs=2)
    pe.encoding.register_forward_hook(lambda mod, args, out: seen.__setitem__("pe", args[0]))
    pe(v)
    assert torch.equal(seen["pe"], 2 * v - 1)
    ff = inr.ff_mlp(1, 4, 1, n_features=3)
    ff.encoding.register_forward_hook(lambda mod, args, out: seen.__setitem__("ff", (args[0], out)))
    ff(v)
    arg = 2 * math.pi * v @ ff.encoding.B.T
    assert torch.equal(seen["ff"][0], v) and torch.allclose(seen["ff"][1], torch.cat([arg.cos(), arg.sin()], -1))
    sir = inr.siren(1, 4, 1)
    sir.hidden[0].register_forward_hook(lambda mod, args, out: seen.__setitem__("siren", args[0]))
    sir(v)
    assert torch.equal(seen["siren"], 2 * v - 1)
    p = inr.poly_inr(1, width=4, levels=2, coord_range=(-1.0, 3.0))
    A = p.synthesis.styles(p.ws)
    ref = p.synthesis.evaluate(A, -1 + 4 * v)[0]
    assert torch.allclose(p(v), ref)


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_overfits_a_16x16_image(name):
    # camera at 16x16 (detailed: 256 distinct values), ~20k parameters, 300 full-batch Adam steps
    img = inr.load_image("camera", 16)
    coords, target = inr.image_pixels(img)
    assert target.std() > 0.4
    torch.manual_seed(0)
    lr = {"relu": 3e-3, "pe": 3e-3, "ff": 3e-3, "siren": 3e-4}[name]
    m = inr.build_inr(name, 20_000, 1, depth=3, **({"n_freqs": 4} if name == "pe" else {}))
    h = inr.fit(m, coords, target, 300, lr=lr, log_every=50)
    assert h["final_psnr"] > 30, h["psnr"]
    assert h["psnr"][0] < 15                                              # it did start far off
    assert h["steps"] == [0, 50, 100, 150, 200, 250, 300] and not h["diverged"]


def test_psnr_of_pixel_sets_by_hand():
    t = torch.zeros(1, 10, 3)                         # [B, P, C] in [-1, 1], scored on [0, 1] like images
    assert psnr(to_unit(t + 0.1), to_unit(t)).item() == pytest.approx(10 * math.log10(4 / 0.01))
    assert psnr(to_unit(t + 5.0), to_unit(t - 1.0)).item() == pytest.approx(10 * math.log10(4 / 4))   # clamped to 1
    assert psnr(t, t).item() == float("inf")


def test_fit_flags_divergence():
    m = inr.relu_mlp(1, 8, 2)
    coords, target = torch.rand(16, 2), torch.full((16, 1), float("nan"))
    h = inr.fit(m, coords, target, 5)
    assert h["diverged"] and math.isnan(h["final_psnr"])
    with pytest.raises(ValueError, match="schedule"):
        inr.fit(m, coords, target, 5, schedule="linear")


def test_killed_fit_resumes_bit_exactly(tmp_path, monkeypatch):
    """A fit interrupted after its step-6 checkpoint and started again ends with the same weights,
    history and Adam state as an uninterrupted fit; the state file is removed at the end."""
    torch.manual_seed(0)
    coords, target = torch.rand(64, 2), torch.rand(64, 3) * 2 - 1
    kw = dict(steps=10, lr=3e-3, schedule="cosine", log_every=2, test=(coords[:8], target[:8]), test_every=3)

    def model():
        torch.manual_seed(1)
        return inr.relu_mlp(3, 16, 2)

    ref_model = model()
    ref = inr.fit(ref_model, coords, target, **kw)

    state = tmp_path / "fit.state.pt"
    real_step, calls = torch.optim.Adam.step, {"n": 0}

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt("killed")
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        inr.fit(model(), coords, target, state_path=state, checkpoint_every=3, state_key={"x": 1}, **kw)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert torch.load(state, weights_only=True)["step"] == 6
    resumed_model = model()
    res = inr.fit(resumed_model, coords, target, state_path=state, checkpoint_every=3, state_key={"x": 1}, **kw)
    assert res["resumed_from"] == 6 and ref["resumed_from"] is None and not state.exists()
    assert len(res["step_seconds"]) == len(ref["step_seconds"]) == 10
    assert res["step_seconds_median"] == float(np.median(res["step_seconds"]))
    for a, b in zip(ref_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    for k in ("steps", "psnr", "test_steps", "test_psnr", "final_psnr", "final_test_psnr"):
        assert res[k] == ref[k], k
    # a state file of another fit is refused, naming the argument and the file
    torch.save({"key": "other", "step": 1}, state)
    with pytest.raises(ValueError, match="state_path: .*fit.state.pt"):
        inr.fit(model(), coords, target, state_path=state, state_key={"x": 1}, **kw)
    with pytest.raises(ValueError, match="checkpoint_every"):
        inr.fit(model(), coords, target, checkpoint_every=0, **kw)


def test_generalization_fit_cache_reuses_only_identical_settings(tmp_path):
    a = inr.generalization_fit("relu", "text", "text", 16, 3, 1e-3, cache_dir=tmp_path)
    assert not a["cached"] and a["key"]["size"] == 16 and a["params"] == polyinr.count_parameters(inr.relu_mlp(3, 256, 3))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("text-relu-") and files[0].endswith(".json")
    b = inr.generalization_fit("relu", "text", "text", 16, 3, 1e-3, cache_dir=tmp_path)
    assert b["cached"] and {k: v for k, v in b.items() if k != "cached"} == \
        {k: v for k, v in a.items() if k != "cached"}
    c = inr.generalization_fit("relu", "text", "text", 16, 3, 2e-3, cache_dir=tmp_path)   # another lr: a new fit
    assert not c["cached"] and c["heldout"] != a["heldout"] and len(list(tmp_path.iterdir())) == 2
    # the same fit without a cache gives the same numbers (the cache changes nothing)
    d = inr.generalization_fit("relu", "text", "text", 16, 3, 1e-3)
    assert (d["train"], d["heldout"], d["full"]) == (a["train"], a["heldout"], a["full"])
    # the CPU named explicitly is the same cache entry (GPU fits get "device" in their key)
    e = inr.generalization_fit("relu", "text", "text", 16, 3, 1e-3, cache_dir=tmp_path, device="cpu")
    assert e["cached"] and e["key"] == a["key"] and "device" not in e["key"] and a["device"] == "cpu"


def test_fit_device_argument():
    assert inr.resolve_device("cpu") == torch.device("cpu")
    assert inr.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        inr.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            inr.resolve_device("cuda")
    coords, target = inr.image_pixels(inr.load_image("camera", 8))
    runs = []
    for device in (None, "cpu"):
        torch.manual_seed(0)
        m = inr.relu_mlp(1, 16, 2)
        runs.append((inr.fit(m, coords, target, 5, device=device)["final_psnr"], m))
    assert runs[0][0] == runs[1][0] and next(runs[1][1].parameters()).device.type == "cpu"


def test_discrete_orthonormal_polynomials():
    Q = inr.discrete_orthonormal_polynomials(64, 63)
    assert np.abs(Q.T @ Q - np.eye(64)).max() < 1e-12          # orthonormal up to the full degree
    x = np.linspace(-1, 1, 64)
    assert np.ptp(Q[:, 0]) == 0
    for k in (1, 4, 9):                                          # column k is a polynomial of degree exactly k
        assert inr.polynomial_fit_residual(x, Q[:, k], k) < 1e-12
        assert inr.polynomial_fit_residual(x, Q[:, k], k - 1) > 0.5
    with pytest.raises(ValueError, match="degree"):
        inr.discrete_orthonormal_polynomials(8, 8)


def _lstsq_polynomial_psnr(img, d, total):
    """Reference: least squares on the monomials x^p y^q of the pixel grid (float64)."""
    C, H, W = img.shape
    y, x = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    pq = [(a, b) for a in range(d + 1) for b in range(d + 1) if (a + b <= d or not total)]
    A = np.stack([(x ** a * y ** b).reshape(-1) for a, b in pq], 1)
    mse = []
    for c in range(C):
        t = img[c].double().numpy().reshape(-1)
        mse.append(np.mean((np.clip(A @ np.linalg.lstsq(A, t, rcond=None)[0], -1, 1) - t) ** 2))
    return 10 * math.log10(4 / np.mean(mse))


def test_polynomial_bound_is_the_least_squares_projection():
    H, W = 12, 10
    y, x = torch.linspace(-1, 1, H, dtype=torch.float64)[:, None], torch.linspace(-1, 1, W, dtype=torch.float64)[None]
    cubic = (0.3 * x ** 2 * y - 0.2 * y ** 3 + 0.1 * x * y - 0.05).float()[None]      # total degree 3
    b = inr.polynomial_bound_psnr(cubic, [2, 3, 9])
    assert b[3] > 100 and b[9] > 100 and b[2] < 60
    quartic = (0.3 * x ** 2 * y ** 2 - 0.1 * x * y).float()[None]                      # degree 2 per axis, total 4
    assert inr.polynomial_bound_psnr(quartic, [2], total=False)[2] > 100
    assert inr.polynomial_bound_psnr(quartic, [3])[3] < 60 < inr.polynomial_bound_psnr(quartic, [4])[4]
    # a random image: the projections equal least squares on the monomials
    img = torch.rand(2, H, W, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    for d in (1, 4):
        for total in (True, False):
            assert inr.polynomial_bound_psnr(img, [d], total=total)[d] == \
                pytest.approx(_lstsq_polynomial_psnr(img, d, total), rel=1e-9)
    with pytest.raises(ValueError, match="img"):
        inr.polynomial_bound_psnr(img[0], [2])
    with pytest.raises(ValueError, match="degrees"):
        inr.polynomial_bound_psnr(img, [-1])


def test_every_other_pixel_split():
    H, W = 6, 8
    s = inr.every_other_pixel(H, W)
    assert len(s["train"]) == 12 and len(s["heldout"]) == 12 and len(s["all"]) == 48
    assert not set(s["train"].tolist()) & set(s["heldout"].tolist())
    grid = inr.image_pixels(torch.zeros(1, H, W))[0].view(H, W, 2)
    assert torch.equal(grid[::2, ::2].reshape(-1, 2), inr.image_pixels(torch.zeros(1, H, W))[0][s["train"]])
    assert s["heldout"][0].item() == 1 * W + 1


def test_images_load_in_range():
    # text at 128: its thin strokes average away to grey at 32 px
    for name, channels, size in [("camera", 1, 32), ("astronaut", 3, 32), ("grace_hopper", 3, 32), ("letter", 1, 32),
                                 ("text", 3, 128)]:
        img = inr.load_image(name, size)
        assert img.shape == (channels, size, size) and img.dtype == torch.float32
        assert -1 <= img.min() < -0.5 and 0.5 < img.max() <= 1
    with pytest.raises(ValueError, match="name"):
        inr.load_image("lena", 32)
    with pytest.raises(ValueError, match="size"):
        inr.load_image("camera", 1)
    assert np.array_equal(inr.text_image(64, seed=1), inr.text_image(64, seed=1))


def test_pixels_round_trip():
    img = torch.randn(3, 5, 7)
    coords, vals = inr.image_pixels(img)
    assert coords.shape == (35, 2) and torch.equal(inr.pixels_image(vals, 5, 7), img)
    assert torch.equal(vals[1 * 7 + 2], img[:, 1, 2]) and torch.allclose(coords[1 * 7 + 2], torch.tensor([2 / 6, 1 / 4]))


def test_taylor_coefficients_and_polynomial_degree():
    c = inr.sinusoid_taylor_coefficients([(1.0, 1.0, 0.0)], 0.0, 5)       # sin x
    assert c == pytest.approx([0, 1, 0, -1 / 6, 0, 1 / 120], abs=1e-15)
    x = torch.linspace(-0.5, 0.5, 11, dtype=torch.float64)
    assert torch.allclose(inr.taylor_polynomial(c, x, 0.0), x - x ** 3 / 6 + x ** 5 / 120)
    t = np.linspace(0, 1, 50)
    deg, res = inr.fitted_degree(t, np.stack([t ** 3 - t, 2 * t ** 2], 1), 6)
    assert deg == 3 and res[2] > 1e-3 and res[3] < 1e-12


def test_pure_identity_polyinr_level_degrees():
    m = inr.poly_inr(1, width=8, levels=5, pure=True, slope=1.0).double()
    t = torch.linspace(0, 1, 60, dtype=torch.float64)
    with torch.no_grad():
        out, lv = m(torch.stack([0.1 + 0.8 * t, 0.3 + 0.5 * t], 1), return_levels=True)
    degrees = [inr.fitted_degree(t.numpy(), h.numpy(), 8)[0] for h in lv["features"]]
    assert degrees == [1, 2, 3, 4, 5]
    assert inr.fitted_degree(t.numpy(), out.numpy(), 8)[0] == 5


def test_identity_polyinr_reaches_but_never_passes_the_polynomial_bound():
    """With identity activations a 3-level pure Poly-INR is a polynomial of total degree <= 3: fitted
    to a smooth non-polynomial image it converges to the best such polynomial (the bound) and stops
    there, while a ReLU MLP (not a polynomial) goes far past it."""
    H = W = 12
    y, x = torch.linspace(-1, 1, H)[:, None], torch.linspace(-1, 1, W)[None]
    img = (0.6 * torch.sin(3 * x + 1) * torch.cos(2.5 * y))[None]
    coords, target = inr.image_pixels(img)
    bound = inr.polynomial_bound_psnr(img, [2, 3])
    torch.manual_seed(0)
    poly = inr.fit(inr.poly_inr(1, width=16, levels=3, pure=True, slope=1.0, coord_range=(-1.0, 1.0)),
                   coords, target, 400, lr=3e-3)["final_psnr"]
    torch.manual_seed(0)
    relu = inr.fit(inr.relu_mlp(1, 64, 3), coords, target, 400, lr=3e-3)["final_psnr"]
    assert bound[2] + 0.5 < bound[3]
    assert bound[3] - 1e-3 < poly <= bound[3] + 1e-6
    assert relu > bound[3] + 10


def test_generalization_models_follow_the_protocol():
    ff = inr.generalization_model("ff", "text", 3)
    assert ff.encoding.B.shape == (256, 2) and len(ff.mlp.hidden) == 3 and ff.mlp.hidden[0].out_features == 256
    assert abs(ff.encoding.B.std().item() - 14.0) < 1.5
    pe = inr.generalization_model("pe", "natural", 3)
    assert pe.mlp.hidden[0].in_features == 512
    poly = inr.generalization_model("polyinr_pure", "natural", 3)
    assert abs(polyinr.count_parameters(poly) - polyinr.count_parameters(inr.generalization_model("ff", "natural", 3))) \
        <= 0.05 * polyinr.count_parameters(ff)
    with pytest.raises(ValueError, match="kind"):
        inr.generalization_model("ff", "photos")


def test_width_search_is_exact_and_leaves_the_rng_alone():
    # brute force over every width: the search returns the closest count
    for name, kw in [("relu", {"depth": 3}), ("polyinr_pure", {"levels": 3})]:
        counts = {w: inr.count_at_width(name, w, 2, **kw) for w in range(1, 120)}
        best = min(counts, key=lambda w: abs(counts[w] - 7_000))
        assert abs(counts[inr.width_for_budget(name, 7_000, 2, **kw)] - 7_000) == abs(counts[best] - 7_000)
    torch.manual_seed(5)
    ref = torch.rand(3)
    torch.manual_seed(5)
    inr.width_for_budget("polyinr", 30_000, 3)
    assert torch.equal(torch.rand(3), ref)
    with pytest.raises(ValueError, match="budget"):
        inr.width_for_budget("relu", 10 ** 12, 1)
