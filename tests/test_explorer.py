"""The explorer (polyinr.explorer): state -> image and extent, mixing, heat-map overlay, validation,
caching, the widget callbacks driven from Python, and notebook 10."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import polyinr
from polyinr.studies.explorer import (
    Explorer,
    ExplorerApp,
    ExplorerState,
    LatentCache,
    benchmark,
    check_state,
    heatmap_overlay,
    level_maps,
    render_view,
    seed_z,
    state_ws,
    to_rgb_u8,
    view_extent,
)

F32 = None   # render_view(dtype=None): exact float32


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return polyinr.build_generator("letters", width=16, levels=4, z_dim=8, w_dim=16, embed_dim=8, num_classes=5).eval()


def test_view_extent_by_hand():
    assert view_extent(ExplorerState()) == ((0.0, 1.0), (0.0, 1.0))
    assert view_extent(ExplorerState(zoom=2.0, center_x=0.25, center_y=0.75)) == ((0.0, 0.5), (0.5, 1.0))
    assert view_extent(ExplorerState(zoom=0.5, center_x=0.5, center_y=0.5)) == ((-0.5, 1.5), (-0.5, 1.5))


def test_render_view_shape_and_unit_view_equals_render(G):
    img = render_view(G, ExplorerState(resolution=24, cls=2, seed=5), dtype=F32)
    assert img.shape == (24, 24, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()   # 1 channel -> grey
    ws = G.mapping(seed_z(5, G.cfg.z_dim), torch.tensor([2]))
    assert np.array_equal(img, to_rgb_u8(polyinr.render(G, ws, 24, 24)))
    assert render_view(G, ExplorerState(resolution=7), dtype=torch.bfloat16).shape == (7, 7, 3)


def test_zoomed_view_is_a_crop_of_a_denser_render(G):
    # zoom 2 around (0.25, 0.25) at N px covers [0, 0.5]^2 with spacing 0.5 / (N - 1): the top-left
    # N x N pixels of the unit square rendered at 2N - 1 px
    N = 9
    zoomed = render_view(G, ExplorerState(zoom=2.0, center_x=0.25, center_y=0.25, resolution=N), dtype=F32)
    full = render_view(G, ExplorerState(resolution=2 * N - 1), dtype=F32)
    assert np.abs(zoomed.astype(int) - full[:N, :N].astype(int)).max() <= 1
    panned = render_view(G, ExplorerState(center_x=1.5, resolution=N), dtype=F32)   # entirely right of the frame
    assert not np.array_equal(panned, render_view(G, ExplorerState(resolution=N), dtype=F32))


def test_mixing_mask_is_respected(G):
    cache = LatentCache(G)
    a = ExplorerState(cls=1, seed=3, mix_cls=4, mix_seed=8, resolution=12)
    ws_a = cache(1, 3, 1.0)
    ws_b = cache(4, 8, 1.0)
    assert torch.equal(state_ws(G, a, cache), ws_a)                               # no level from B: A exactly
    assert torch.equal(state_ws(G, replace(a, mix_levels=(0, 1, 2, 3)), cache), ws_b)   # all levels: B
    mixed = state_ws(G, replace(a, mix_levels=(1, 3)), cache)
    assert torch.equal(mixed[:, [1, 3]], ws_b[:, [1, 3]]) and torch.equal(mixed[:, [0, 2]], ws_a[:, [0, 2]])
    only_a = render_view(G, replace(a, mix_levels=()), dtype=F32)
    assert np.array_equal(only_a, render_view(G, ExplorerState(cls=1, seed=3, mix_cls=0, mix_seed=0, resolution=12), dtype=F32))
    all_b = render_view(G, replace(a, mix_levels=(0, 1, 2, 3)), dtype=F32)
    assert np.array_equal(all_b, render_view(G, ExplorerState(cls=4, seed=8, resolution=12), dtype=F32))
    assert not np.array_equal(only_a, all_b)


def test_heatmap_overlay_shape_and_blending(G):
    s = ExplorerState(resolution=20, heatmap_level=2, heatmap_resolution=10)
    maps = level_maps(G, state_ws(G, s), s)
    assert maps.shape == (4, 10, 10)                                              # all levels at min(20, 10) px
    assert maps.amin(dim=(1, 2)).eq(0).all() and maps.amax(dim=(1, 2)).eq(1).all()   # min-max normalised
    base = render_view(G, replace(s, heatmap_level=-1), dtype=F32)
    over = render_view(G, s, dtype=F32)
    assert over.shape == (20, 20, 3) and not np.array_equal(over, base)
    assert np.array_equal(render_view(G, replace(s, heatmap_alpha=0.0), dtype=F32), base)
    # alpha 1 shows the colormap alone: its darkest and brightest colours appear (map min 0, max 1)
    pure = heatmap_overlay(base, torch.tensor([[0.0, 1.0], [0.5, 0.25]]), alpha=1.0)
    import matplotlib
    lut = (matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
    assert np.array_equal(pure[0, 0], np.clip(lut[0] + 0.5, 0, 255).astype(np.uint8))
    assert np.array_equal(pure[0, -1], np.clip(lut[255] + 0.5, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("field,value", [
    ("cls", 5), ("cls", -1), ("cls", 1.5), ("mix_cls", 9), ("seed", -1), ("seed", True), ("psi", math.nan),
    ("psi", 3.0), ("zoom", 0.0), ("zoom", -2.0), ("center_x", math.inf), ("resolution", 0), ("resolution", 4096),
    ("heatmap_level", 4), ("heatmap_level", -2), ("mix_levels", (0, 4)), ("mix_levels", 3),
    ("heatmap_kind", "weights"), ("heatmap_reduce", "max"), ("heatmap_alpha", 1.5),
])
def test_invalid_values_name_the_field(G, field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        check_state(replace(ExplorerState(), **{field: value}), G)


def test_explorer_caches_and_keeps_state_on_error(G):
    ex = Explorer(G, ExplorerState(resolution=16), dtype=None)
    first = ex.render()
    misses = ex.latents.misses
    ex.update(center_x=0.3)                                  # pan: new render, no new mapping call
    assert ex.latents.misses == misses and not np.array_equal(ex.image, first)
    ex.update(heatmap_level=1)
    maps = ex._maps
    ex.update(heatmap_level=3)                               # another level: the maps are reused
    assert ex._maps is maps and ex.latents.misses == misses
    state = ex.state
    with pytest.raises(ValueError, match="resolution"):
        ex.update(resolution=-3)
    assert ex.state == state
    with pytest.raises(ValueError, match="colour"):
        ex.update(colour=1)


def test_app_callbacks_change_the_image(G):
    app = ExplorerApp(G, ExplorerState(resolution=16, cls=1, seed=2, mix_cls=3, mix_seed=4), dtype=None)
    png0 = app.image.value
    assert png0[:8] == b"\x89PNG\r\n\x1a\n"
    app.controls["psi"].value = 0.3
    assert app.state.psi == 0.3 and app.image.value != png0
    app.controls["mix_preset"].value = "all"                   # every level from source B, one render
    assert [t.value for t in app.level_toggles] == [True] * 4 and app.state.mix_levels == (0, 1, 2, 3)
    assert np.array_equal(app.explorer.image, render_view(G, ExplorerState(resolution=16, cls=3, seed=4, psi=0.3),
                                                          dtype=F32))
    app.level_toggles[0].value = False
    assert app.state.mix_levels == (1, 2, 3)
    png = app.image.value
    app.controls["seed"].value = -7                          # invalid: error shown, state and image kept
    assert "seed:" in app.status.value and app.state.seed == 2 and app.image.value == png
    app.set_state(ExplorerState(resolution=24, cls=0))
    assert app.controls["resolution"].value == 24 and app.explorer.image.shape == (24, 24, 3)
    assert not any(t.value for t in app.level_toggles)


def test_benchmark_reports_and_uses_the_mapping_cache(G):
    out = benchmark(G, size=16, repeats=12, dtype=None)
    assert out["repeats"] == 12 and out["size"] == 16
    # 12 changes but only the seeds / classes / psi values seen before miss the cache
    assert out["mapping_cache_hits"] > 0 and out["mapping_cache_misses"] < 12
    app = ExplorerApp(G, ExplorerState(resolution=16), dtype=None)
    out2 = benchmark(G, size=16, repeats=6, dtype=None, app=app, heatmap=False)
    assert out2["through_widgets"] and app.state.resolution == 16 and "heatmap_on_seconds" not in out2


