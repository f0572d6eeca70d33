"""Generator structure: exact parameter counts, the paper's identities, input validation."""
import dataclasses

import pytest
import torch

import polyinr
from polyinr.core.config import ModelConfig, get_train_preset
from polyinr.studies import theory


@pytest.mark.parametrize("preset,total,synthesis,mapping", [
    ("imagenet", 45_869_695, 45_200_447, 669_248),
    ("ffhq", 13_198_399, 12_902_463, 295_936),
    ("emoji", 1_115_775, 1_014_591, 101_184),            # ours (12_emoji), not the paper's
])
def test_exact_parameter_counts(preset, total, synthesis, mapping):
    with torch.device("meta"):
        G = polyinr.build_generator(preset)
    assert polyinr.count_parameters(G) == total
    assert polyinr.count_parameters(G.synthesis) == synthesis
    assert polyinr.count_parameters(G.mapping) == mapping


def test_main_job_trains_the_letters_preset_at_width_64():
    cfg = get_train_preset("letters")
    with torch.device("meta"):
        G = polyinr.build_generator(cfg.preset, **cfg.g_overrides)
        full = polyinr.build_generator("letters")
    assert (G.cfg.levels, G.cfg.width, G.cfg.w_dim, G.cfg.z_dim) == (10, 64, 128, 32)
    assert polyinr.count_parameters(G) == 284_061
    assert polyinr.count_parameters(full) == 843_677          # the letters preset itself (11_baselines' Poly-INR)


def test_parameter_count_does_not_depend_on_resolution():
    counts = {r: polyinr.count_parameters(polyinr.build_generator("letters", resolution=r)) for r in (16, 32, 256)}
    assert len(set(counts.values())) == 1


def test_pure_form_drops_the_released_extras(tiny_cfg):
    full = polyinr.build_generator("letters", **tiny_cfg)
    pure = polyinr.build_generator("letters", **tiny_cfg, **polyinr.PURE)
    n, w, L = tiny_cfg["width"], tiny_cfg["w_dim"], tiny_cfg["levels"]
    style_fc = (L - 1) * (w * n + n)                       # FC(w -> n) of levels >= 1
    warp = 6 * (w + 1) + (L - 1) * 6 * (n + 1)             # 2x2 + translation heads
    affine_in = (L - 1) * 3 * n * (n - w)                  # heads read w (w_dim) instead of s (n)
    assert polyinr.count_parameters(full) - polyinr.count_parameters(pure) == style_fc + warp + affine_in


def test_mapping_shapes_and_psi_zero_returns_class_mean(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg))
    c = torch.tensor([3, 0, 3])
    ws = G.mapping(torch.randn(3, 8), c, psi=0.0)
    assert ws.shape == (3, tiny_cfg["levels"], tiny_cfg["w_dim"])
    assert torch.equal(ws, G.mapping.w_avg[c][:, None].expand_as(ws))
    z = torch.randn(3, 8)
    w_full, w_half = G.mapping(z, c), G.mapping(z, c, psi=0.5)
    assert torch.allclose(w_half, 0.5 * (G.mapping.w_avg[c][:, None] + w_full), atol=1e-6)


def test_unconditional_psi_zero():
    G = polyinr.build_generator("letters", num_classes=0, width=16, levels=3)
    G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg))
    ws = G.mapping(torch.randn(2, G.cfg.z_dim), psi=0)
    assert torch.equal(ws, G.mapping.w_avg.expand_as(ws))


def test_w_avg_update_by_hand(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg, w_avg_beta=0.5)
    m = G.mapping
    m.w_avg.fill_(1.0)
    z = torch.randn(3, 8)
    c = torch.tensor([2, 2, 4])
    w = m(z, c)[:, 0]
    m(z, c, update_w_avg=True)
    # class 2 saw two samples: mean of them with weight 1 - 0.5^2; class 4 one with weight 0.5
    exp2 = 0.25 * 1.0 + 0.75 * w[:2].mean(0)
    exp4 = 0.5 * 1.0 + 0.5 * w[2]
    assert torch.allclose(m.w_avg[2], exp2, atol=1e-6)
    assert torch.allclose(m.w_avg[4], exp4, atol=1e-6)
    assert torch.all(m.w_avg[[0, 1, 3]] == 1.0)


def _pure_double(levels, warp=False, width=12):
    G = polyinr.build_generator("letters", width=width, levels=levels, slope=1.0, clamp=None, warp=warp,
                                z_dim=8, w_dim=16, embed_dim=8).double()
    ws = G.mapping(torch.randn(3, 8, dtype=torch.float64), torch.tensor([0, 5, 9]))
    return G, ws


@pytest.mark.parametrize("levels", [1, 3, 6])
@pytest.mark.parametrize("warp", [False, True])
def test_identity_activations_give_polynomial_of_degree_levels(levels, warp):
    G, ws = _pure_double(levels, warp)
    prof = theory.difference_profile(G, ws, max_order=levels + 2)
    scale = max(prof)
    assert prof[levels + 1] < 1e-9 * scale          # order L + 1 vanishes ...
    assert prof[levels] > 1e-5 * scale              # ... order L does not: the degree is reached
    assert theory.polynomial_degree(prof) == levels


@pytest.mark.parametrize("flat", [0, 2])
def test_flat_level_lowers_the_degree(flat):
    levels = 5
    G, ws = _pure_double(levels)
    A = theory.zero_coordinate_terms(G.synthesis.styles(ws), [flat])
    prof = theory.difference_profile(G, ws, A=A, max_order=levels + 1)
    scale = max(prof)
    assert prof[levels] < 1e-9 * scale
    assert prof[levels - 1] > 1e-5 * scale
    assert theory.polynomial_degree(prof) == theory.degree_bound(levels, [flat]) == levels - 1


@pytest.mark.parametrize("flat", [[1, 3], [1, 1, 4]])
def test_degree_bound_counts_distinct_flat_levels(flat):
    levels = 5
    G, ws = _pure_double(levels)
    A = theory.zero_coordinate_terms(G.synthesis.styles(ws), flat)
    prof = theory.difference_profile(G, ws, A=A, max_order=levels + 1)
    assert theory.polynomial_degree(prof) == theory.degree_bound(levels, flat) == levels - len(set(flat))


def test_finite_differences_of_a_cubic():
    # f(t) = t^3 at t = 0..5: 0, 1, 8, 27, 64, 125 -> forward differences at 0: 0, 1, 6, 6, 0
    d = theory.finite_differences(torch.arange(6.0) ** 3, 4)
    assert [float(x) for x in d] == [0.0, 1.0, 6.0, 6.0, 0.0]


def test_released_activations_are_not_a_low_degree_polynomial():
    G = polyinr.build_generator("letters", width=16, levels=3).double()
    ws = G.mapping(torch.randn(2, G.cfg.z_dim, dtype=torch.float64), torch.tensor([0, 1]))
    prof = theory.difference_profile(G, ws, max_order=6, coords=theory.line_coords(steps=7, start=(-0.5, -0.5),
                                                                                     direction=(1.7, 1.9)))
    assert prof[4] > 1e-6 * max(prof)


@pytest.mark.parametrize("preset_kw", [{}, dict(coord_act=False), dict(slope=1.0, clamp=None)])
def test_stylegan_special_case(preset_kw, tiny_cfg):
    G = polyinr.build_generator("letters", **{**tiny_cfg, **preset_kw}).double()
    ws = G.mapping(torch.randn(2, 8, dtype=torch.float64), torch.tensor([1, 2]))
    res = theory.stylegan_special_case(G, ws, polyinr.coordinate_grid(5, 7).double(), level=2)
    assert res["constant_over_image"]
    assert res["max_abs_diff"] < 1e-12 * max(1.0, res["feature_scale"])
    # the identity needs a = b = 0: without it, the modulated-weight formula is wrong
    synth = G.synthesis
    _, lv = synth.evaluate(synth.styles(ws), polyinr.coordinate_grid(5, 7).double(), return_levels=True)
    assert not torch.all(lv["affine"][2] == lv["affine"][2][:, :1])


def test_no_pixel_interaction(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    ws = G.mapping(torch.randn(2, 8), torch.tensor([0, 4]))
    coords = torch.rand(23, 2) * 1.6 - 0.3
    with torch.no_grad():
        full = G.synthesis(ws, coords)
        one_by_one = torch.cat([G.synthesis(ws, coords[i:i + 1]) for i in range(len(coords))], dim=1)
    assert torch.allclose(full, one_by_one, atol=1e-5, rtol=0)


def test_per_sample_coords_match_shared_coords(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    ws = G.mapping(torch.randn(2, 8), torch.tensor([0, 4]))
    coords = torch.rand(10, 2)
    with torch.no_grad():
        shared = G.synthesis(ws, coords)
        per = G.synthesis(ws, coords[None].repeat(2, 1, 1))
    assert torch.allclose(shared, per, atol=1e-6)


def test_training_forward_matches_inference_path(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    z, c = torch.randn(3, 8), torch.tensor([0, 1, 2])
    img = G(z, c, height=9, width=13)                       # autograd path (no in-place ops)
    assert img.shape == (3, 3, 9, 13) and img.requires_grad
    ref = polyinr.render(G, G.mapping(z, c).detach(), 9, 13)  # in-place inference path
    assert torch.allclose(img.detach(), ref, atol=1e-5)
    img.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.synthesis.parameters())


def test_same_seed_same_images():
    imgs = []
    for _ in range(2):
        torch.manual_seed(123)
        G = polyinr.build_generator("letters", width=32, levels=4)
        ws = G.mapping(torch.randn(2, G.cfg.z_dim), torch.tensor([3, 4]))
        imgs.append(polyinr.render(G, ws, 8, 8))
    assert torch.equal(imgs[0], imgs[1])


@pytest.mark.parametrize("call,arg", [
    (lambda G, ws: G.synthesis(ws, torch.rand(10, 3)), "coords"),
    (lambda G, ws: G.synthesis(ws, torch.rand(3, 10, 2)), "coords"),
    (lambda G, ws: G.synthesis(ws, torch.tensor([[0.0, float("nan")]])), "coords"),
    (lambda G, ws: G.synthesis(ws, torch.tensor([[0.0, float("inf")]])), "coords"),
    (lambda G, ws: G.synthesis(ws[:, :2], torch.rand(4, 2)), "ws"),
    (lambda G, ws: G.mapping(torch.randn(2, 8), torch.tensor([0, 5])), "c"),
    (lambda G, ws: G.mapping(torch.randn(2, 8), torch.tensor([-1, 0])), "c"),
    (lambda G, ws: G.mapping(torch.randn(2, 8)), "c"),
    (lambda G, ws: G.mapping(torch.randn(2, 8), torch.tensor([0.0, 1.0])), "c"),
    (lambda G, ws: G.mapping(torch.randn(2, 8), torch.tensor([0, 1, 2])), "c"),
    (lambda G, ws: G.mapping(torch.randn(2, 7), torch.tensor([0, 1])), "z"),
    (lambda G, ws: polyinr.render(G, ws, 0, 4), "height"),
    (lambda G, ws: polyinr.render(G, ws, 4, 4, extent=((0, 1),)), "extent"),
    (lambda G, ws: polyinr.render(G, ws, 4, 4, chunk_pixels=0), "chunk_pixels"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(call, arg, tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    ws = G.mapping(torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=rf"^{arg}\b|\b{arg}:"):
        call(G, ws)


def test_unconditional_model_rejects_classes():
    """An unconditional model has one implicit class, 0: c=None and all-zero ids give the same ws; any other
    id (or a float tensor) is an error."""
    G = polyinr.build_generator("ffhq", width=16, levels=2)
    z = torch.randn(2, 64)
    assert torch.equal(G.mapping(z, None), G.mapping(z, torch.tensor([0, 0])))
    for bad in (torch.tensor([0, 1]), torch.tensor([0.0, 0.0])):
        with pytest.raises(ValueError, match="c: this generator is unconditional"):
            G.mapping(z, bad)


def test_unknown_preset_and_bad_config():
    with pytest.raises(ValueError, match="unknown preset 'cifar'"):
        polyinr.build_generator("cifar")
    with pytest.raises(ValueError, match="unknown override"):
        polyinr.build_generator("letters", depth=3)
    with pytest.raises(ValueError, match="ModelConfig.width"):
        polyinr.build_generator("letters", width=0)
    with pytest.raises(ValueError, match="ModelConfig.clamp"):
        polyinr.build_generator("letters", clamp=-1.0)
    with pytest.raises(ValueError, match="ModelConfig.warp"):
        ModelConfig(warp="yes")


def test_config_round_trip():
    cfg = polyinr.get_preset("imagenet", clamp=None)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 3})
    assert dataclasses.replace(cfg, width=8).width == 8


def test_unconditional_w_avg_decays_once_per_batch():
    G = polyinr.build_generator("ffhq", width=16, levels=2, w_avg_beta=0.9)
    G.mapping.w_avg.fill_(2.0)
    z = torch.randn(5, 64)
    w = G.mapping(z)[:, 0]
    G.mapping(z, update_w_avg=True)
    assert torch.allclose(G.mapping.w_avg, 0.9 * 2.0 + 0.1 * w.mean(0), atol=1e-6)
