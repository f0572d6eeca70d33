"""The baseline generators (conv: StyleGAN2-like, cips: CIPS-like) pass the tests Poly-INR passes where they
apply: matched parameter counts, shapes, class conditioning, chunked = full rendering, checkpoint round trip,
determinism, and training through the same loop."""
import dataclasses

import pytest
import torch

import polyinr
from polyinr.core.config import get_preset, get_train_preset
from polyinr.core.grid import coordinate_grid
from polyinr.core.model import Generator, count_parameters, matched_config
from polyinr.training import loop as T
from polyinr.training.steps import g_param_groups

ARCHS = ["conv", "cips"]


def small(arch: str, **kw) -> Generator:
    """A small letters-like generator of family `arch` (conv: 3 style inputs at 8 px)."""
    cfg = dataclasses.replace(get_preset("letters"), width=24, levels=4, resolution=8, **kw)
    return Generator(matched_config(cfg, arch) if arch != "polyinr" else cfg, preset="letters")


@pytest.mark.parametrize("preset", ["letters", "ffhq", "imagenet"])
@pytest.mark.parametrize("arch", ARCHS)
def test_matched_parameter_counts(preset, arch):
    """Within 10 % of Poly-INR's at every preset (counted on the meta device); letters exactly as published
    on the results page."""
    cfg = get_preset(preset)
    with torch.device("meta"):
        base = count_parameters(Generator(cfg))
        m = matched_config(cfg, arch)
        n = count_parameters(Generator(m))
    assert abs(n / base - 1) < 0.10 and m.arch == arch
    if preset == "letters":
        assert (base, m.width, m.levels, n) == {"conv": (843_677, 124, 5, 849_587),
                                                "cips": (843_677, 200, 10, 842_625)}[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_conditioning_and_chunked_rendering(arch):
    G = small(arch).eval()
    z, c = torch.randn(3, 32), torch.tensor([0, 7, 25])
    img = G(z, c)
    assert img.shape == (3, 1, 8, 8) and torch.isfinite(img).all()
    ws = G.mapping(z, c)
    torch.testing.assert_close(polyinr.render(G, ws, 8, 8, chunk_pixels=5), img, rtol=1e-5, atol=1e-5)
    other = G(z, torch.tensor([1, 8, 24]))                          # the class changes the image ...
    assert (other - img).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    assert not torch.allclose(G(torch.randn(3, 32), c), img)        # ... and so does z
    with pytest.raises(ValueError, match="c: class ids must be in"):
        G(z, torch.tensor([0, 1, 26]))
    U = small(arch, num_classes=0).eval()
    assert U(torch.randn(2, 32)).shape == (2, 1, 8, 8)


def test_cips_renders_any_grid_and_conv_only_its_own():
    cips, conv = small("cips").eval(), small("conv").eval()
    z, c = torch.randn(2, 32), torch.tensor([3, 4])
    ws = cips.mapping(z, c)
    assert polyinr.render(cips, ws, 24, 40).shape == (2, 1, 24, 40)     # any size, non-square
    # a 3x denser grid holds the native nodes at every third pixel (pixel centres of both grids agree at them)
    dense = polyinr.render(cips, ws, 22, 22)
    torch.testing.assert_close(dense[:, :, ::3, ::3], polyinr.render(cips, ws, 8, 8), rtol=1e-4, atol=1e-4)
    ws = conv.mapping(z, c)
    full = polyinr.render(conv, ws, 8, 8)
    crop = polyinr.render_coords(conv, ws, coordinate_grid(8, 8)[10:20])       # any subset of its own pixels
    torch.testing.assert_close(crop, full.flatten(2)[:, :, 10:20].transpose(1, 2))
    for fn in (lambda: polyinr.render(conv, ws, 16, 16), lambda: conv(z, c, height=12),
               lambda: polyinr.render(conv, ws, 8, 8, extent=((-0.5, 1.5), (0.0, 1.0)))):
        with pytest.raises(ValueError, match="the conv generator renders only its native 8x8 grid"):
            fn()


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_and_determinism(arch, tmp_path):
    torch.manual_seed(5)
    G = small(arch)
    torch.manual_seed(5)
    G2 = small(arch)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))
    path = polyinr.save_checkpoint(tmp_path / "g.pt", G)
    H = polyinr.load_generator(path)
    assert H.cfg == G.cfg and H.cfg.arch == arch and type(H.synthesis) is type(G.synthesis)
    z, c = torch.randn(4, 32), torch.tensor([0, 1, 2, 3])
    assert torch.equal(H.eval()(z, c), G.eval()(z, c))


def test_conv_levels_are_checked():
    with pytest.raises(ValueError, match="the conv generator at resolution 16 has 5 style inputs .* set levels=5"):
        polyinr.build_generator("letters", arch="conv")
    with pytest.raises(ValueError, match="arch must be one of"):
        polyinr.build_generator("letters", arch="stylegan")


@pytest.mark.parametrize("arch", ARCHS)
def test_baselines_train_through_the_same_loop(arch, tmp_path):
    levels = {"conv": 3, "cips": 4}[arch]
    cfg = get_train_preset("letters", g_overrides={"arch": arch, "width": 16, "levels": levels}, resolution=8,
                           batch=4, kimg=0.016, tick_kimg=0.008, d_width=8, d_max_width=16, precision="fp32",
                           grid_rows=1, deterministic=True)
    run = T.train(cfg, tmp_path / "run", progress=False)
    stats = T.read_stats(run)
    assert len(stats) == 2 and all(torch.isfinite(torch.tensor(s["g_loss"])) for s in stats)
    G = polyinr.load_generator(run / "generator.pt")
    assert G.cfg.arch == arch and G.cfg.num_classes == 26
    groups = g_param_groups(G, dataclasses.replace(cfg, head_lr_mult=0.1))
    heads = {id(p) for p in G.synthesis.head_parameters()}
    assert heads and {id(p) for p in groups[1]["params"]} == heads and groups[1]["lr"] == pytest.approx(cfg.lr_g * 0.1)
    again = T.train(cfg, tmp_path / "again", progress=False)                  # same seed, same weights
    a, b = (torch.load(r / "generator.pt", weights_only=True)["G"] for r in (run, again))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_kept_fit_is_reused_only_for_its_own_config(tmp_path):
    from polyinr.evaluation.letters import random_letters_cnn
    from polyinr.studies.comparison import fit_and_score
    cfg = get_train_preset("letters", g_overrides={"width": 16, "levels": 3}, resolution=16, batch=4, kimg=0.008,
                           tick_kimg=0.008, d_width=8, d_max_width=16, precision="fp32", grid_rows=1, eval_ticks=0)
    kw = dict(num=8, ks=(), classifiers={16: random_letters_cnn(0)})
    row = fit_and_score(cfg.to_dict(), tmp_path / "fit", **kw)
    before = (tmp_path / "fit" / "generator.pt").read_bytes()
    assert fit_and_score(cfg.to_dict(), tmp_path / "fit", **kw) == row          # kept: neither retrained nor rescored
    assert (tmp_path / "fit" / "generator.pt").read_bytes() == before
    with pytest.raises(ValueError, match=r"holds a fit of another training config \(fields \['seed'\]\)"):
        fit_and_score(dataclasses.replace(cfg, seed=1).to_dict(), tmp_path / "fit", **kw)
