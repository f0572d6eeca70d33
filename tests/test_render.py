"""Coordinate grids and chunked rendering."""
import pytest
import torch

import polyinr
from polyinr.core.render import render_coords


def test_coordinate_grid_endpoints_and_order():
    g = polyinr.coordinate_grid(3, 5)
    assert g.shape == (15, 2)
    # row-major: first row has y = 0, x = 0, 1/4, ..., 1
    assert torch.equal(g[:5, 0], torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    assert torch.equal(g[:5, 1], torch.zeros(5))
    assert torch.equal(g[::5, 1], torch.tensor([0, 0.5, 1.0]))
    e = polyinr.coordinate_grid(2, 2, extent=((-0.25, 1.25), (2.0, 3.0)))
    assert torch.equal(e, torch.tensor([[-0.25, 2.0], [1.25, 2.0], [-0.25, 3.0], [1.25, 3.0]]))


def test_paper_grid_formula():
    H, W = 7, 11
    g = polyinr.coordinate_grid(H, W).view(H, W, 2)
    for r in range(H):
        for c in range(W):
            assert g[r, c, 0].item() == pytest.approx(c / (W - 1), abs=1e-7)
            assert g[r, c, 1].item() == pytest.approx(r / (H - 1), abs=1e-7)


def test_pixel_grid_in_frame_is_bit_identical():
    H, W, m = 9, 13, 3
    full = polyinr.pixel_grid(H, W, rows=(-m, H + m), cols=(-m, W + m)).view(H + 2 * m, W + 2 * m, 2)
    inner = full[m:m + H, m:m + W].reshape(-1, 2)
    assert torch.equal(inner, polyinr.coordinate_grid(H, W))
    assert full[0, 0, 0].item() == pytest.approx(-m / (W - 1))


@pytest.mark.parametrize("H,W", [(7, 19), (32, 32), (1, 5)])
@pytest.mark.parametrize("chunk", [1, 37, 256])
def test_chunked_render_equals_full_pass(H, W, chunk, tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    ws = G.mapping(torch.randn(3, 8), torch.tensor([0, 2, 4]))
    with torch.no_grad():
        full = G.synthesis(ws, polyinr.coordinate_grid(H, W))              # one pass, autograd-free
    img = polyinr.render(G, ws, H, W, chunk_pixels=chunk)
    assert img.shape == (3, 3, H, W)
    assert torch.allclose(img, full.transpose(1, 2).reshape(3, 3, H, W), atol=1e-5, rtol=0)


def test_render_coords_and_extent(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    ws = G.mapping(torch.randn(2, 8), torch.tensor([0, 1]))
    ext = ((-0.25, 1.25), (0.5, 0.75))
    img = polyinr.render(G, ws, 6, 10, extent=ext, chunk_pixels=7)
    rgb = render_coords(G, ws, polyinr.coordinate_grid(6, 10, extent=ext), chunk_pixels=13)
    assert torch.allclose(img, rgb.transpose(1, 2).reshape(2, 3, 6, 10), atol=1e-6)


def test_unseen_and_non_square_resolutions():
    G = polyinr.build_generator("letters", resolution=32)
    ws = G.mapping(torch.randn(1, G.cfg.z_dim), torch.tensor([0]))
    imgs = {}
    for H, W in [(17, 29), (64, 16), (3, 3)]:
        imgs[H, W] = img = polyinr.render(G, ws, H, W)
        assert img.shape == (1, 1, H, W) and torch.isfinite(img).all()
    # every grid includes the corners of [0, 1]^2; (17, 29) and (3, 3) share the centre (0.5, 0.5)
    ref = imgs[3, 3][0, 0]
    for (H, W), img in imgs.items():
        corners = img[0, 0][[0, 0, -1, -1], [0, -1, 0, -1]]
        torch.testing.assert_close(corners, ref[[0, 0, -1, -1], [0, -1, 0, -1]], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(imgs[17, 29][0, 0, 8, 14], ref[1, 1], rtol=1e-5, atol=1e-6)


def test_bfloat16_render_is_close_to_float32():
    G = polyinr.build_generator("letters")
    ws = G.mapping(torch.randn(2, G.cfg.z_dim), torch.tensor([0, 1]))
    ref = polyinr.render(G, ws, 16, 16)
    low = polyinr.render(G, ws, 16, 16, dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    rel = (low - ref).norm() / ref.norm()
    assert 0 < rel < 0.05, rel   # > 0: the bf16 path really ran in bf16
    with pytest.raises(ValueError, match="dtype"):
        polyinr.render(G, ws, 4, 4, dtype=torch.int32)


def test_synthesize_equals_render_and_carries_gradients(tiny_cfg):
    G = polyinr.build_generator("letters", **tiny_cfg)
    ws = G.mapping(torch.randn(2, tiny_cfg["z_dim"]), torch.tensor([0, 4])).detach().requires_grad_(True)
    extent = ((-0.2, 1.1), (0.0, 1.3))
    img = polyinr.synthesize(G, ws, 7, 5, extent=extent)                 # [B, C, H, W], with autograd
    assert img.shape == (2, 3, 7, 5) and img.requires_grad
    assert torch.allclose(img.detach(), polyinr.render(G, ws.detach(), 7, 5, extent=extent, chunk_pixels=4), atol=1e-5)
    img.square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    z = torch.randn(2, tiny_cfg["z_dim"])
    c = torch.tensor([1, 2])
    assert torch.equal(G(z, c, height=6, width=4), polyinr.synthesize(G, G.mapping(z, c), 6, 4))   # G(z, c) is the same
    with pytest.raises(ValueError, match="height"):
        polyinr.synthesize(G, ws, 0, 5)
