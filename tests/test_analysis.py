"""polyinr.analysis: heat-maps, extrapolation, higher resolution, interpolation, style mixing, and
notebooks 04-08 under papermill with smoke=True."""
import math

import pytest
import torch

import polyinr
from polyinr.core.grid import pixel_center_extent
from polyinr.core.images import upsample
from polyinr.evaluation.quality import psnr, ssim
from polyinr.studies import analysis as an
from polyinr.studies.inversion import invert


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(1)
    return polyinr.build_generator("letters", width=16, levels=4).eval()


def _ws(G, n, seed=0, c=None):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.cfg.z_dim, generator=g)
    c = torch.arange(n) % G.cfg.num_classes if c is None else c
    return G.mapping(z, c)


# ---------------------------------------------------------------------------------------------- levels, mixing

def test_level_groups_paper_split_and_partition():
    assert an.level_groups(10) == {"coarse": (0, 1, 2, 3), "middle": (4, 5, 6), "fine": (7, 8, 9)}
    for L in range(1, 15):
        g = an.level_groups(L)
        assert sum(g.values(), ()) == tuple(range(L))
    with pytest.raises(ValueError, match="levels"):
        an.level_groups(0)


def test_level_mask_specs():
    assert an.level_mask(10, "coarse").tolist() == [True] * 4 + [False] * 6
    assert an.level_mask(10, "0-1,8").nonzero().flatten().tolist() == [0, 1, 8]
    assert an.level_mask(10, [9, 2]).nonzero().flatten().tolist() == [2, 9]
    assert an.level_mask(4, [True, False, False, True]).tolist() == [True, False, False, True]
    assert not an.level_mask(4, "none").any() and an.level_mask(4, "all").all()
    for bad in ("0-12", "abc", [4], [True, False]):
        with pytest.raises(ValueError, match="levels"):
            an.level_mask(4, bad)


def test_mix_styles_exact(G):
    a, b = _ws(G, 3, seed=0), _ws(G, 3, seed=1)
    assert torch.equal(an.mix_styles(a, b, "none"), a)
    assert torch.equal(an.mix_styles(a, b, "all"), b)
    m = an.mix_styles(a, b, [1, 3])
    assert torch.equal(m[:, [1, 3]], b[:, [1, 3]]) and torch.equal(m[:, [0, 2]], a[:, [0, 2]])
    # all levels from A renders exactly A
    assert torch.equal(polyinr.render(G, an.mix_styles(a, b, []), 8, 8), polyinr.render(G, a, 8, 8))
    with pytest.raises(ValueError, match="ws_b"):
        an.mix_styles(a, b[:, :2], "all")


def test_style_mixing_grid(G):
    rows, cols = _ws(G, 2, seed=0), _ws(G, 3, seed=1)
    out = an.style_mixing_grid(G, rows, cols, "none", 8, 6)
    assert out["mixed"].shape == (2, 3, 1, 8, 6) and out["rows"].shape == (2, 1, 8, 6)
    assert torch.allclose(out["mixed"], out["rows"][:, None].expand_as(out["mixed"]), atol=1e-6)
    out = an.style_mixing_grid(G, rows, cols, "all", 8, 6)
    assert torch.allclose(out["mixed"], out["cols"][None].expand_as(out["mixed"]), atol=1e-6)
    tiles = an.mixing_grid_tiles(out)
    assert tiles.shape == (3 * 4, 1, 8, 6) and torch.all(tiles[0] == 1.0)
    assert torch.equal(tiles[1:4], out["cols"]) and torch.equal(tiles[4], out["rows"][0])
    assert torch.equal(tiles[5:8], out["mixed"][0])


def test_mixing_votes_hand_case():
    v = an.mixing_votes(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 0, 1]), torch.tensor([1, 1, 1, 2]))
    assert v == {"a": 0.25, "b": 0.25, "other": 0.5}


# ---------------------------------------------------------------------------------------------- heat-maps

def test_minmax_normalize():
    m = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[7.0, 7.0], [7.0, 7.0]]])
    out = an.minmax_normalize(m)
    assert torch.equal(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))


@pytest.mark.parametrize("reduce", ["mean", "l2"])
def test_level_heatmaps_normalised_and_match_synthesis(G, reduce):
    ws = _ws(G, 3)
    H, W = 12, 20
    out = an.level_heatmaps(G, ws, H, W, reduce=reduce, chunk_rows=50)       # several chunks
    assert out["features"].shape == (3, 4, H, W) and out["affine"].shape == (3, 4, H, W)
    for k in ("features", "affine"):
        assert torch.all(out[k].amin((-2, -1)) == 0) and torch.all(out[k].amax((-2, -1)) == 1)
    assert torch.allclose(out["image"], polyinr.render(G, ws, H, W), atol=1e-6)
    raw = an.level_heatmaps(G, ws, H, W, reduce=reduce, normalize=False)
    with torch.no_grad():
        _, lv = G.synthesis(ws, polyinr.coordinate_grid(H, W), return_levels=True)
    red = (lambda h: h.mean(-1)) if reduce == "mean" else (lambda h: h.norm(dim=-1))
    ref = torch.stack([red(h) for h in lv["features"]], 1).view(3, 4, H, W)
    assert torch.allclose(raw["features"], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="reduce"):
        an.level_heatmaps(G, ws, H, W, reduce="max")


def test_map_correlation_hand_case():
    ref = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    maps = torch.stack([ref[0], -2 * ref[0] + 1, torch.ones(2, 2)])[None]   # [1, 3, 2, 2]
    r = an.map_correlation(maps, ref)
    assert torch.allclose(r, torch.tensor([[1.0, -1.0, 0.0]]), atol=1e-6)


def test_ink_centroid_and_coarse_share_hand_cases():
    img = torch.ones(1, 1, 5, 9)
    img[0, 0, 3, 2] = -1.0                                                # one black pixel at row 3, col 2
    assert torch.allclose(an.ink_centroid(img), torch.tensor([[2 / 8, 3 / 4]]))
    const = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(an.coarse_share(const), torch.ones(1))
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]).remainder(2).float()[None, None] * 2 - 1
    assert an.coarse_share(checker).item() == 0.0
    with pytest.raises(ValueError, match="blocks"):
        an.coarse_share(torch.ones(1, 1, 6, 6), blocks=4)


def test_level_sensitivity(G):
    ws, alt = _ws(G, 4, seed=0), _ws(G, 4, seed=5)
    same = an.level_sensitivity(G, ws, ws, 8)
    assert same["names"] == ["0", "1", "2", "3"] and torch.all(same["pixel_change"] == 0)
    s = an.level_sensitivity(G, ws, alt, 8, levels=an.level_groups(4), classifier=lambda x: x.flatten(1)[:, :3])
    assert s["names"] == ["coarse", "middle", "fine"] and s["pixel_change"].shape == (3,)
    assert torch.all(s["pixel_change"] > 0)
    assert torch.all((s["coarse_share"] >= 0) & (s["coarse_share"] <= 1 + 1e-6))
    assert torch.all(s["dc_share"] <= s["coarse_share"] + 1e-6)            # the mean is inside the block means
    assert s["base_change"]["label_alt"] == 1.0                          # all levels from alt = the alt render
    ref = (polyinr.render(G, alt, 8, 8) - polyinr.render(G, ws, 8, 8)).abs().mean().item()
    assert math.isclose(s["base_change"]["pixel_change"], ref, rel_tol=1e-6)


def test_group_means_hand_case():
    per = {"pixel_change": torch.tensor([1.0, 3.0, 5.0, 10.0]), "dc_share": [0.0, 0.0, 0.5, 0.25]}
    out = an.group_means(per, {"coarse": (0, 1), "middle": (2,), "fine": (3,)})
    assert out == {"coarse": {"pixel_change": 2.0, "dc_share": 0.0}, "middle": {"pixel_change": 5.0, "dc_share": 0.5},
                   "fine": {"pixel_change": 10.0, "dc_share": 0.25}}


def test_read_level_groups_rules_in_order():
    s = lambda alt, changed, dc: {"label_alt": alt, "label_changed": changed, "dc_share": dc}   # noqa: E731
    roles = an.read_level_groups({"a": s(0.5, 0.9, 0.5), "b": s(0.49, 0.25, 0.5), "c": s(0.0, 0.24, 0.1),
                                  "d": s(0.0, 0.1, 0.099)})
    assert roles == {"a": "identity", "b": "breaks", "c": "tone", "d": "shape"}
    assert set(an.LEVEL_ROLES) == {"identity", "breaks", "tone", "shape"}


# ---------------------------------------------------------------------------------------------- extrapolation

def test_margin_pixels_and_extent():
    assert an.margin_pixels(16, 0.25) == 4 and an.margin_pixels(64, 0.25) == 16 and an.margin_pixels(17, 0.25) == 4
    (x0, x1), _ = an.frame_extent(16, 4)
    assert math.isclose(x0, -4 / 15) and math.isclose(x1, 19 / 15)


@pytest.mark.parametrize("size,margin", [(16, 4), (7, 3), (5, 0)])
def test_extrapolate_in_frame_exact(G, size, margin):
    ws = _ws(G, 3)
    out = an.extrapolate(G, ws, size, margin)
    S = size + 2 * margin
    assert out["image"].shape == (3, 1, S, S) and out["frame"] == (margin, margin + size)
    # the in-frame coordinates are bit-identical to the normal grid's, and so is every level's output there
    ext = polyinr.pixel_grid(size, size, (-margin, size + margin), (-margin, size + margin))
    inside = torch.arange(S * S).view(S, S)[margin:margin + size, margin:margin + size].reshape(-1)
    assert torch.equal(ext[inside], polyinr.coordinate_grid(size, size))
    with torch.no_grad():
        A = G.synthesis.styles(ws)
        _, lv_ext = G.synthesis.evaluate(A, ext, return_levels=True)
        _, lv = G.synthesis.evaluate(A, polyinr.coordinate_grid(size, size), return_levels=True)
    for k in ("features", "affine"):
        assert all(torch.equal(a[:, inside], b) for a, b in zip(lv_ext[k], lv[k]))
    # the final n -> C projection (a GEMV) may round differently for a different number of rows: 1 ulp
    assert (an.frame_crop(out) - polyinr.render(G, ws, size, size)).abs().max() <= 2.5e-7
    # the corner pixel sits at the extent's corner
    corner = polyinr.render_coords(G, ws, torch.tensor([[out["extent"][0][0], out["extent"][1][0]]]))
    assert torch.allclose(out["image"][:, :, 0, 0], corner[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="margin"):
        an.extrapolate(G, ws, size, -1)


def test_zoom_out_and_render_series(G):
    ws = _ws(G, 2)
    series = an.zoom_out(G, ws, 6, [0, 2, 5])
    assert [r["image"].shape[-1] for r in series] == [6, 10, 16]
    assert all(torch.allclose(an.frame_crop(r), series[0]["image"], atol=2.5e-7, rtol=0) for r in series)
    ext = [((0.0, 1.0), (0.0, 1.0)), ((-1.0, 2.0), (-1.0, 2.0))]
    out = an.render_series(G, ws, ext, 9, 7)
    assert out.shape == (2, 2, 1, 9, 7)
    assert torch.equal(out[0], polyinr.render(G, ws, 9, 7))


# ---------------------------------------------------------------------------------------------- higher resolution

def test_pixel_center_extent_subdivides_base_pixels():
    assert pixel_center_extent(16, 1) == ((0.0, 1.0), (0.0, 1.0))
    base, k = 16, 8
    ext = pixel_center_extent(base, k)
    fine = polyinr.coordinate_grid(1, base * k, ext)[:, 0].double()        # x of the fine pixels
    coarse = polyinr.coordinate_grid(1, base)[:, 0].double()
    assert torch.allclose(fine.view(base, k).mean(1), coarse, atol=1e-6)   # block centres = base pixels
    assert torch.allclose(fine.diff(), torch.full((base * k - 1,), 1 / (k * (base - 1)), dtype=torch.double), atol=1e-6)


def test_render_upsampled_and_resampling(G):
    ws = _ws(G, 2)
    assert torch.equal(an.render_upsampled(G, ws, 8, 1), polyinr.render(G, ws, 8, 8))
    assert an.render_upsampled(G, ws, 8, 3).shape == (2, 1, 24, 24)
    x = torch.rand(2, 1, 5, 5) * 2 - 1
    up = upsample(x, 4)
    assert up.shape == (2, 1, 20, 20) and up.min() >= -1 and up.max() <= 1
    assert torch.allclose(upsample(torch.full((1, 1, 4, 4), 0.3), 2), torch.full((1, 1, 8, 8), 0.3))
    nearest = x.repeat_interleave(3, -1).repeat_interleave(3, -2)
    assert torch.allclose(an.downsample_area(nearest, 3), x, atol=1e-6)


def test_grey_fraction_hand_case():
    img = torch.tensor([[[[1.0, -1.0], [0.0, 0.5]]]])                     # ink 0, 1, 0.5, 0.25
    assert an.grey_fraction(img).item() == 0.5


def test_psnr_hand_values():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.1)
    assert torch.allclose(psnr(x, y), torch.full((2,), 20.0))
    assert torch.allclose(psnr(x, y * 2, data_range=2.0), torch.full((2,), 20.0))
    assert torch.isinf(psnr(x, x)).all()
    with pytest.raises(ValueError, match="y"):
        psnr(x, y[:, :, :3])


def test_ssim_identity_hand_case_and_properties():
    torch.manual_seed(0)
    x, y = torch.rand(3, 2, 16, 20), torch.rand(3, 2, 16, 20)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    assert torch.allclose(ssim(x, y), ssim(y, x))
    assert torch.all(ssim(x, y) < 0.5)
    # constant images a and b: sigma = 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.5, 0.25, 0.01 ** 2
    s = ssim(torch.full((1, 1, 11, 11), a), torch.full((1, 1, 11, 11), b))
    assert math.isclose(s.item(), (2 * a * b + c1) / (a * a + b * b + c1), rel_tol=1e-6)   # 0.80006...
    # y = 1 - x on a zero-mean-contrast image: structure term negative
    assert ssim(x, 1 - x).mean() < 0
    assert torch.isnan(ssim(torch.rand(1, 1, 10, 10), torch.rand(1, 1, 10, 10))).all()   # below the 11 px window
    with pytest.raises(ValueError, match="y"):
        ssim(x, y[:1])


def test_ssim_matches_scikit_image():
    import skimage.metrics as skm  # a core dependency: a missing one is a failure, not a skip
    torch.manual_seed(0)
    x = torch.rand(2, 1, 24, 17)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(2):
        ref = skm.structural_similarity(x[i, 0].double().numpy(), y[i, 0].double().numpy(), data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert math.isclose(ours[i].item(), ref, rel_tol=1e-5)


def test_pixel_inversion_reduces_the_error(G):
    """The projection used by 06_high_resolution: `invert` with the pixel loss, no noise, cosine ramp-down."""
    ws_true = _ws(G, 2, seed=3)
    c = torch.arange(2)
    target = polyinr.render(G, ws_true, 8, 8)
    flags = [p.requires_grad for p in G.parameters()]
    for mode in ("w", "w+"):
        out = invert(G, target, c, mode=mode, steps=60, lr=0.05, ramp_up=0.05, ramp_down=1.0, noise=0.0, loss="pixel")
        assert out.ws.shape == (2, 4, G.cfg.w_dim) and len(out.history["loss"]) == 60
        assert out.history["loss"][-1] < 0.2 * out.history["loss"][0]
        if mode == "w":
            assert torch.equal(out.ws[:, 0], out.ws[:, 3])                 # one w broadcast to every level
    assert [p.requires_grad for p in G.parameters()] == flags
    with pytest.raises(ValueError, match="mode"):
        invert(G, target, c, mode="s")


# ---------------------------------------------------------------------------------------------- interpolation

def test_lerp_properties():
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    out = an.lerp(a, b, torch.tensor([0.0, 0.25, 1.0]))
    assert out.shape == (3, 3, 5)
    assert torch.equal(out[0], a) and torch.equal(out[-1], b)
    assert torch.allclose(out[1], 0.75 * a + 0.25 * b)
    assert an.lerp(a, b, 0.5).shape == (1, 3, 5)


def test_slerp_properties():
    e1, e2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(an.slerp(e1, e2, 0.5)[0], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    a, b = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    t = torch.linspace(0, 1, 7)
    out = an.slerp(a, b, t)                                                # [7, 4, 8]
    assert torch.equal(out[0], a) and torch.equal(out[-1], b)
    assert torch.allclose(out.norm(dim=-1), torch.ones(7, 4), atol=1e-5)   # stays on the sphere
    theta = torch.acos((a * b).sum(-1))
    ang = torch.acos(torch.nn.functional.cosine_similarity(out, a[None], dim=-1).clamp(-1, 1))
    assert torch.allclose(ang, t[:, None] * theta[None], atol=1e-3)        # constant angular speed
    assert torch.allclose(an.slerp(a, 2 * a, t), an.lerp(a, 2 * a, t))    # parallel: falls back to lerp


def test_interpolation_endpoints_equal_sources(G):
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(2, G.cfg.z_dim, generator=g), torch.randn(2, G.cfg.z_dim, generator=g)
    c = torch.tensor([1, 4])
    wa, wb = G.mapping(za, c), G.mapping(zb, c)
    seq = an.interpolate_w(wa, wb, 5)
    assert seq.shape == (2, 5, 4, G.cfg.w_dim)
    assert torch.equal(seq[:, 0], wa) and torch.equal(seq[:, -1], wb)
    seq = an.interpolate_z(G, za, zb, c, 6)
    assert seq.shape == (2, 6, 4, G.cfg.w_dim)
    assert torch.allclose(seq[:, 0], wa, atol=1e-6) and torch.allclose(seq[:, -1], wb, atol=1e-6)
    seq = an.interpolate_classes(G, za, torch.tensor([0, 2]), torch.tensor([3, 3]), 4)
    assert torch.equal(seq[:, 0], G.mapping(za, torch.tensor([0, 2])))
    assert torch.equal(seq[:, -1], G.mapping(za, torch.tensor([3, 3])))
    frames = an.render_ws(G, seq, 6)
    assert frames.shape == (2, 4, 1, 6, 6)
    assert torch.allclose(frames[:, 0], polyinr.render(G, seq[:, 0], 6, 6), atol=1e-6)


def test_smoothness_hand_cases():
    ramp = torch.linspace(0, 1, 5).view(1, 5, 1, 1, 1).expand(1, 5, 1, 2, 2)    # constant speed 0.25
    s = an.smoothness(ramp)
    assert math.isclose(s["step_mean"], 0.25, rel_tol=1e-6) and s["step_var"] < 1e-12
    assert s["step_cv"] < 1e-5 and math.isclose(s["max_over_mean"], 1.0, rel_tol=1e-5)
    jump = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]).view(1, 5, 1, 1, 1)         # steps 0, 0, 1, 0
    s = an.smoothness(jump)
    assert math.isclose(s["step_mean"], 0.25) and math.isclose(s["step_var"], 0.1875)
    assert math.isclose(s["max_over_mean"], 4.0) and math.isclose(s["step_cv"], math.sqrt(3), rel_tol=1e-6)
    assert torch.equal(an.step_changes(jump), torch.tensor([[0.0, 0.0, 1.0, 0.0]]))


def test_perceptual_path_length(G):
    extractor = torch.nn.Flatten()                                         # pixels as features
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(8, G.cfg.z_dim, generator=g), torch.randn(8, G.cfg.z_dim, generator=g)
    c = torch.arange(8) % 3
    t = torch.rand(8, generator=g) * 0.9
    for space in ("w", "z"):
        r = an.perceptual_path_length(G, extractor, za, zb, c, space=space, t=t, size=8, batch=3)
        assert r["distances"].shape == (8,) and r["ppl"] > 0 and math.isfinite(r["ppl"])
        flat = an.perceptual_path_length(G, extractor, za, za, c, space=space, t=t, size=8)
        assert flat["ppl"] == 0.0                                          # a constant path has length 0
    # one distance by hand through the public float64 model: |f(w(t)) - f(w(t + eps))|^2 / eps^2
    import copy

    from polyinr.core.render import coordinate_grid
    G64 = copy.deepcopy(G).double()
    with torch.no_grad():
        wa = G64.mapping.unchecked(za[:1].double(), c[:1])
        wb = G64.mapping.unchecked(zb[:1].double(), c[:1])
        imgs = [G64.synthesis(torch.lerp(wa, wb, tt),
                              coordinate_grid(8, 8).double()).flatten() for tt in (float(t[0]), float(t[0]) + 1e-4)]
        f = [torch.nn.functional.normalize(x, dim=0) for x in imgs]
    r = an.perceptual_path_length(G, extractor, za, zb, c, "w", t=t, size=8)
    assert float(r["distances"][0]) == pytest.approx(float((f[0] - f[1]).square().sum() / 1e-8), rel=1e-6)
    d = r["distances"]   # StyleGAN's filter: the mean of the distances between the 1st and 99th percentiles
    keep = d[(d >= torch.quantile(d, 0.01)) & (d <= torch.quantile(d, 0.99))]
    assert len(keep) == len(d) - 2 and r["ppl"] == pytest.approx(float(keep.mean()))
    # eps -> 0 limit: halving eps barely changes the value (float64)
    r1 = an.perceptual_path_length(G, extractor, za, zb, c, "w", t=t, size=8, eps=1e-4)
    r2 = an.perceptual_path_length(G, extractor, za, zb, c, "w", t=t, size=8, eps=5e-5)
    assert torch.allclose(r1["distances"], r2["distances"], rtol=1e-2)
    with pytest.raises(ValueError, match="space"):
        an.perceptual_path_length(G, extractor, za, zb, c, space="x")


def test_classify_mixes(G):
    a, b = _ws(G, 3, seed=0), _ws(G, 3, seed=1)
    clf = lambda x: x.flatten(1)[:, :5]                                  # noqa: E731  (a "classifier" on pixels)
    assert torch.equal(an.classify_mixes(G, clf, a, b, "none", 8), clf(polyinr.render(G, a, 8, 8)).argmax(1))
    assert torch.equal(an.classify_mixes(G, clf, a, b, "all", 8), clf(polyinr.render(G, b, 8, 8)).argmax(1))


def test_sample_z_per_sample_seeds(G):
    z = an.sample_z(G, 5, seed=3)
    assert z.shape == (5, G.cfg.z_dim)
    assert torch.equal(an.sample_z(G, 2, seed=3), z[:2])                 # sample k does not depend on n
    assert torch.equal(an.sample_z(G, 2, seed=3, offset=3), z[3:])
    assert not torch.equal(an.sample_z(G, 2, seed=4), z[:2])


def test_boundary_steps_hand_case():
    img = torch.zeros(1, 1, 4, 4)
    img[..., 1:3, 1:3] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])          # frame (1, 3) inside a zero margin
    s = an.boundary_steps({"image": img, "frame": (1, 3)})
    assert math.isclose(s["across"], 2.5) and math.isclose(s["inside"], 1.5)


# ---------------------------------------------------------------------------------------------- notebooks (smoke)




# --------------------------------------------------------------------------------- kinds of generator


def _kind(dataset, num_classes=26, channels=1, class_names=None, preset=None):
    cfg = polyinr.get_preset("letters", width=8, levels=2, num_classes=num_classes, img_channels=channels)
    return polyinr.Generator(cfg, preset=preset, dataset=dataset, class_names=class_names)


def test_letters_models_are_recognised_by_their_dataset():
    assert an.is_letters_model(_kind("letters")) and not an.is_letters_model(_kind("emoji", 26, 1))
    assert an.is_letters_model(_kind(None))                 # an older checkpoint: 26 greyscale classes
    assert not an.is_letters_model(_kind(None, 26, 3)) and not an.is_letters_model(_kind(None, 10, 1))


def test_letters_only_prints_why_it_skips(capsys):
    assert an.letters_only(_kind("letters"), "the votes") and capsys.readouterr().out == ""
    assert not an.letters_only(_kind("emoji", 8, 3), "the votes")
    out = capsys.readouterr().out
    assert out.startswith("skipped: the votes needs a letters model") and "emoji (8 classes, 3 channels)" in out


def test_class_names_and_ids():
    letters = _kind("letters")
    assert an.class_names(letters)[:3] == ["A", "B", "C"] and an.class_ids(letters, "AEK").tolist() == [0, 4, 10]
    pets = _kind("pets", 3, 3, class_names=["cat", "dog", "owl"])
    assert an.class_names(pets) == ["cat", "dog", "owl"]
    assert an.class_ids(pets, "owl, 0").tolist() == [2, 0]
    assert an.class_ids(pets, "AEKMRS", count=3).tolist() == [0, 1, 2]     # a letters spec: spread over classes
    with pytest.raises(ValueError, match="classes: 'yak' is neither"):
        an.class_ids(pets, "yak")
    with pytest.raises(ValueError, match="class id 3 is outside 0..2"):
        an.class_ids(pets, "3")
    imagenet = _kind("imagenet", 1000, 3)
    names = an.class_names(imagenet)                          # timm ships the ImageNet class names
    assert len(names) == 1000 and len(set(names)) == 1000 and names[207] == "golden retriever" and names[0] == "tench"
    assert an.class_ids(imagenet, "golden retriever,980").tolist() == [207, 980]
    assert an.class_ids(imagenet, "", count=3).tolist() == [0, 500, 999]
    free = _kind("ffhq", 0, 3)
    assert an.class_names(free) == ["-"] and an.class_ids(free, "", count=2).tolist() == [0, 0]
