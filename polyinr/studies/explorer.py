"""An interactive explorer of a Poly-INR generator (ipywidgets): class, seed, truncation psi, a
per-level mixing source (style mixing, paper Fig. 7), zoom / pan of the rendered extent (the model
is a function of the coordinates, so zooming renders new detail and panning leaves the frame, Figs.
5-6), output resolution, and a heat-map overlay of one level's features (Fig. 8).

Everything the widgets do is a pure function of an `ExplorerState` (`check_state`, `view_extent`,
`state_ws`, `render_view`), so the callbacks are unit-tested without a browser; `Explorer` adds the
caches that keep updates interactive (the mapping output per (class, seed, psi), the last image,
the last heat-maps), and `ExplorerApp` is the thin widget layer over it.

Speed: a re-render is one `polyinr.render` (chunked, inference mode; bfloat16 autocast by default,
`dtype=torch.float32` for exact values). `python -m polyinr.explorer bench [--widgets] [--threads N]`
prints the median wall and CPU time of an update after a slider change at 256 x 256 as one JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.checkpoint import load_generator
from ..core.files import resolve
from ..core.images import to_uint8
from ..core.render import render
from .analysis import class_names, level_groups, level_heatmaps, level_mask, mix_styles

RESOLUTIONS = (16, 32, 64, 128, 256, 512)
HEATMAP_KINDS = ("features", "affine")
HEATMAP_REDUCE = ("mean", "l2")
MAX_RESOLUTION = 2048


@dataclass(frozen=True)
class ExplorerState:
    """What the explorer shows. Source A is (cls, seed); the levels listed in `mix_levels` take their
    w from source B (mix_cls, mix_seed), both truncated with the same psi. The view is the square of
    side 1 / zoom centred at (center_x, center_y) in frame units ([0, 1]^2 is the training frame),
    rendered at resolution x resolution. heatmap_level -1 is off; otherwise that level's
    `heatmap_kind` map ("features": h_i, "affine": A_i X), reduced over channels by `heatmap_reduce`
    ("mean" or "l2") and min-max normalised, is blended over the image with `heatmap_alpha`, computed
    at min(resolution, heatmap_resolution) pixels and upsampled bilinearly."""
    cls: int = 0
    seed: int = 0
    psi: float = 1.0
    mix_cls: int = 0
    mix_seed: int = 1
    mix_levels: tuple[int, ...] = ()
    zoom: float = 1.0
    center_x: float = 0.5
    center_y: float = 0.5
    resolution: int = 256
    heatmap_level: int = -1
    heatmap_kind: str = "features"
    heatmap_reduce: str = "mean"
    heatmap_alpha: float = 0.6
    heatmap_resolution: int = 128


def _int(name, v, lo=None, hi=None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: expected an integer in {rng}, got {v}")
    return int(v)


def _float(name, v, lo=None, hi=None, open_lo=False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    if lo is not None and (v <= lo if open_lo else v < lo) or hi is not None and v > hi:
        rng = f"{'(' if open_lo else '['}{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise ValueError(f"{name}: expected a number in {rng}, got {v}")
    return float(v)


def check_state(state: ExplorerState, G) -> ExplorerState:
    """Validate `state` against generator G; returns it with normalised types (mix_levels sorted,
    unique). Raises ValueError naming the offending field."""
    if not isinstance(state, ExplorerState):
        raise ValueError(f"state: expected an ExplorerState, got {type(state).__name__}")
    cfg = G.cfg
    n_cls = max(cfg.num_classes, 1)
    L = cfg.levels
    try:
        levels = tuple(sorted({_int("mix_levels", v, 0, L - 1) for v in state.mix_levels}))
    except TypeError:
        raise ValueError(f"mix_levels: expected a sequence of level indices in [0, {L - 1}], "
                         f"got {state.mix_levels!r}") from None
    if state.heatmap_kind not in HEATMAP_KINDS:
        raise ValueError(f"heatmap_kind: expected one of {HEATMAP_KINDS}, got {state.heatmap_kind!r}")
    if state.heatmap_reduce not in HEATMAP_REDUCE:
        raise ValueError(f"heatmap_reduce: expected one of {HEATMAP_REDUCE}, got {state.heatmap_reduce!r}")
    return replace(
        state,
        cls=_int("cls", state.cls, 0, n_cls - 1), mix_cls=_int("mix_cls", state.mix_cls, 0, n_cls - 1),
        seed=_int("seed", state.seed, 0, 2 ** 63 - 1), mix_seed=_int("mix_seed", state.mix_seed, 0, 2 ** 63 - 1),
        psi=_float("psi", state.psi, -2.0, 2.0), mix_levels=levels,
        zoom=_float("zoom", state.zoom, 0.0, None, open_lo=True),
        center_x=_float("center_x", state.center_x), center_y=_float("center_y", state.center_y),
        resolution=_int("resolution", state.resolution, 1, MAX_RESOLUTION),
        heatmap_level=_int("heatmap_level", state.heatmap_level, -1, L - 1),
        heatmap_alpha=_float("heatmap_alpha", state.heatmap_alpha, 0.0, 1.0),
        heatmap_resolution=_int("heatmap_resolution", state.heatmap_resolution, 2, MAX_RESOLUTION),
    )


def view_extent(state: ExplorerState):
    """The rendered square ((x0, x1), (y0, y1)): side 1 / zoom around (center_x, center_y)."""
    half = 0.5 / state.zoom
    return ((state.center_x - half, state.center_x + half), (state.center_y - half, state.center_y + half))


def seed_z(seed: int, z_dim: int) -> torch.Tensor:
    """The latent z [1, z_dim] of a seed: N(0, I) from torch.Generator().manual_seed(seed)."""
    return torch.randn(1, z_dim, generator=torch.Generator().manual_seed(seed))


class LatentCache:
    """LRU cache of mapping outputs ws [1, L, w_dim] keyed by (class, seed, psi)."""

    def __init__(self, G, size: int = 256):
        self.G, self.size = G, size
        self._d: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    @torch.inference_mode()
    def __call__(self, cls: int, seed: int, psi: float) -> torch.Tensor:
        key = (cls, seed, psi)
        if key in self._d:
            self.hits += 1
            self._d.move_to_end(key)
            return self._d[key]
        self.misses += 1
        G = self.G
        device = next(G.parameters()).device
        c = torch.tensor([cls], device=device) if G.cfg.conditional else None
        ws = G.mapping(seed_z(seed, G.cfg.z_dim).to(device), c, psi=psi)
        self._d[key] = ws
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return ws


def state_ws(G, state: ExplorerState, cache: LatentCache | None = None) -> torch.Tensor:
    """ws [1, L, w_dim] of a state: source A's w at every level except `mix_levels`, which take
    source B's (`polyinr.studies.analysis.mix_styles`)."""
    cache = cache or LatentCache(G)
    ws_a = cache(state.cls, state.seed, state.psi)
    if not state.mix_levels:
        return ws_a
    ws_b = cache(state.mix_cls, state.mix_seed, state.psi)
    return mix_styles(ws_a, ws_b, list(state.mix_levels))


def to_rgb_u8(img: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] in [-1, 1] -> uint8 [H, W, 3] (1 channel is repeated)."""
    x = to_uint8(img[0].float())                                          # [C, H, W]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).contiguous().numpy()


def _colormap(name: str = "magma") -> np.ndarray:
    import matplotlib
    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)   # [256, 3]


def heatmap_overlay(image: np.ndarray, heat: torch.Tensor, alpha: float, cmap: str = "magma") -> np.ndarray:
    """Blend a map `heat` [h, w] with values in [0, 1] (upsampled bilinearly to the image size) through
    a colormap over `image` uint8 [H, W, 3]: (1 - alpha) image + alpha colour. -> uint8 [H, W, 3]."""
    H, W = image.shape[:2]
    heat = heat.float()[None, None]
    if heat.shape[-2:] != (H, W):
        heat = F.interpolate(heat, size=(H, W), mode="bilinear", align_corners=True)
    idx = (heat[0, 0].clamp(0, 1) * 255 + 0.5).long().numpy()            # [H, W]
    colour = _colormap(cmap)[idx]                                         # [H, W, 3]
    out = (1 - alpha) * image.astype(np.float32) + alpha * colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def level_maps(G, ws: torch.Tensor, state: ExplorerState) -> torch.Tensor:
    """All levels' heat-maps of the view: [L, h, h] in [0, 1] with h = min(resolution, heatmap_resolution)
    (`polyinr.studies.analysis.level_heatmaps` on the view's extent)."""
    h = min(state.resolution, state.heatmap_resolution)
    maps = level_heatmaps(G, ws, h, h, reduce=state.heatmap_reduce, extent=view_extent(state))
    return maps[state.heatmap_kind][0]                                    # [L, h, h]


def render_view(G, state: ExplorerState, cache: LatentCache | None = None,
                dtype: torch.dtype | None = torch.bfloat16) -> np.ndarray:
    """The explorer's image of `state`: uint8 [resolution, resolution, 3], with the heat-map overlay
    when heatmap_level >= 0. Without caches (see `Explorer` for the cached version)."""
    state = check_state(state, G)
    ws = state_ws(G, state, cache)
    img = to_rgb_u8(render(G, ws, state.resolution, state.resolution, extent=view_extent(state), dtype=dtype))
    if state.heatmap_level >= 0:
        img = heatmap_overlay(img, level_maps(G, ws, state)[state.heatmap_level], state.heatmap_alpha)
    return img


def to_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes (fast settings: the explorer sends one per update)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Explorer:
    """The explorer's logic without widgets: a current state, `update(**changes)` -> image, and caches
    (mapping outputs, the last base image, the last set of heat-maps) so that a change of the overlay
    does not re-render and a change of pan/zoom does not re-run the mapping."""

    def __init__(self, G, state: ExplorerState | None = None, dtype: torch.dtype | None = torch.bfloat16):
        self.G = G.eval()
        self.dtype = dtype
        self.latents = LatentCache(G)
        self.state = check_state(state or ExplorerState(), G)
        self._base_key = self._base = self._maps_key = self._maps = None
        self.image: np.ndarray | None = None
        self.last_seconds = float("nan")

    def _view_key(self, s: ExplorerState):
        return (s.cls, s.seed, s.psi, s.mix_cls if s.mix_levels else None, s.mix_seed if s.mix_levels else None,
                s.mix_levels, s.zoom, s.center_x, s.center_y)

    def render(self) -> np.ndarray:
        t0 = time.perf_counter()
        s = self.state
        ws = None
        key = self._view_key(s) + (s.resolution,)
        if key != self._base_key:
            ws = state_ws(self.G, s, self.latents)
            img = render(self.G, ws, s.resolution, s.resolution, extent=view_extent(s), dtype=self.dtype)
            self._base, self._base_key = to_rgb_u8(img), key
        out = self._base
        if s.heatmap_level >= 0:
            mkey = self._view_key(s) + (min(s.resolution, s.heatmap_resolution), s.heatmap_kind, s.heatmap_reduce)
            if mkey != self._maps_key:
                ws = state_ws(self.G, s, self.latents) if ws is None else ws
                self._maps, self._maps_key = level_maps(self.G, ws, s), mkey
            out = heatmap_overlay(out, self._maps[s.heatmap_level], s.heatmap_alpha)
        self.image = out
        self.last_seconds = time.perf_counter() - t0
        return out

    def update(self, **changes) -> np.ndarray:
        """Apply field changes (validated; on error the state is unchanged) and re-render."""
        unknown = sorted(set(changes) - {f.name for f in fields(ExplorerState)})
        if unknown:
            raise ValueError(f"{unknown[0]}: not an ExplorerState field; fields: {[f.name for f in fields(ExplorerState)]}")
        self.state = check_state(replace(self.state, **changes), self.G)
        return self.render()


# ------------------------------------------------------------------------------------- widget layer


class ExplorerApp:
    """The ipywidgets app over an `Explorer`. `app.widget` is the box to display; `app.controls`
    maps ExplorerState field names (and "mix_preset") to their widgets; `app.image` is the
    ipywidgets.Image whose `value` holds the PNG; `app.status` shows the render time or the error of
    an invalid value (the state then stays as it was). Setting a control's `value` from Python runs
    the same callback as moving it in the browser."""

    def __init__(self, G, state: ExplorerState | None = None, dtype: torch.dtype | None = torch.bfloat16,
                 display_size: int = 384):
        import ipywidgets as W
        self.explorer = Explorer(G, state, dtype)
        s = self.explorer.state
        names = class_names(G)
        L = G.cfg.levels
        cls_opts = [(n, i) for i, n in enumerate(names)]
        lay = W.Layout(width="320px")
        self.controls = {
            "cls": W.Dropdown(options=cls_opts, value=s.cls, description="class", layout=lay),
            "seed": W.IntText(value=s.seed, description="seed", layout=lay),
            "psi": W.FloatSlider(value=s.psi, min=0.0, max=1.5, step=0.05, description="psi", layout=lay),
            "mix_cls": W.Dropdown(options=cls_opts, value=s.mix_cls, description="B class", layout=lay),
            "mix_seed": W.IntText(value=s.mix_seed, description="B seed", layout=lay),
            "mix_preset": W.Dropdown(options=["none", *level_groups(L), "all"], value="none",
                                     description="B levels", layout=lay),
            "zoom": W.FloatLogSlider(value=s.zoom, base=2, min=-3, max=5, step=0.25, description="zoom", layout=lay),
            "center_x": W.FloatSlider(value=s.center_x, min=-1.0, max=2.0, step=0.01, description="pan x", layout=lay),
            "center_y": W.FloatSlider(value=s.center_y, min=-1.0, max=2.0, step=0.01, description="pan y", layout=lay),
            "resolution": W.Dropdown(options=sorted(set(RESOLUTIONS) | {s.resolution}), value=s.resolution,
                                     description="pixels", layout=lay),
            "heatmap_level": W.Dropdown(options=[("off", -1)] + [(f"level {i}", i) for i in range(L)],
                                        value=s.heatmap_level, description="heat-map", layout=lay),
            "heatmap_kind": W.Dropdown(options=list(HEATMAP_KINDS), value=s.heatmap_kind, description="map of",
                                       layout=lay),
            "heatmap_reduce": W.Dropdown(options=list(HEATMAP_REDUCE), value=s.heatmap_reduce,
                                         description="reduce", layout=lay),
            "heatmap_alpha": W.FloatSlider(value=s.heatmap_alpha, min=0.0, max=1.0, step=0.05,
                                           description="opacity", layout=lay),
        }
        self.level_toggles = [W.ToggleButton(value=i in s.mix_levels, description=str(i),
                                             tooltip=f"level {i} from source B", layout=W.Layout(width="34px"))
                              for i in range(L)]
        self.image = W.Image(format="png", layout=W.Layout(width=f"{display_size}px", height=f"{display_size}px",
                                                          border="1px solid #bbb"))
        self.image.add_class("polyinr-explorer-image")
        self.status = W.HTML(value="")
        style = W.HTML("<style>.polyinr-explorer-image, .polyinr-explorer-image img "
                       "{image-rendering: pixelated;}</style>")
        self._busy = False
        for name, w in self.controls.items():
            w.observe(self._on_change, names="value")
        for t in self.level_toggles:
            t.observe(self._on_toggle, names="value")
        c = self.controls
        left = W.VBox([W.HTML("<b>source A</b>"), c["cls"], c["seed"], c["psi"],
                       W.HTML("<b>source B (style mixing)</b>"), c["mix_cls"], c["mix_seed"], c["mix_preset"],
                       W.HBox(self.level_toggles),
                       W.HTML("<b>view</b>"), c["zoom"], c["center_x"], c["center_y"], c["resolution"],
                       W.HTML("<b>heat-map overlay</b>"), c["heatmap_level"], c["heatmap_kind"],
                       c["heatmap_reduce"], c["heatmap_alpha"]])
        self.widget = W.HBox([left, W.VBox([self.image, self.status]), style])
        self.widget.add_class("polyinr-explorer")
        self.refresh()

    @property
    def state(self) -> ExplorerState:
        return self.explorer.state

    def set_state(self, state: ExplorerState) -> None:
        """Move every control to `state` (validated first) and render once."""
        state = check_state(state, self.explorer.G)
        self._busy = True
        try:
            for name, w in self.controls.items():
                if name == "mix_preset":
                    w.value = "none"
                elif name == "resolution" and state.resolution not in w.options:
                    w.options = sorted(set(w.options) | {state.resolution})
                    w.value = state.resolution
                else:
                    w.value = getattr(state, name)
            for i, t in enumerate(self.level_toggles):
                t.value = i in state.mix_levels
        finally:
            self._busy = False
        self.explorer.state = state
        self.refresh()

    def refresh(self) -> None:
        self._show(self.explorer.render())

    def _show(self, img: np.ndarray) -> None:
        self.image.value = to_png(img)
        s = self.explorer.state
        self.status.value = (f"<span class='polyinr-status'>{s.resolution}x{s.resolution}, extent "
                             f"x [{view_extent(s)[0][0]:.3g}, {view_extent(s)[0][1]:.3g}] y "
                             f"[{view_extent(s)[1][0]:.3g}, {view_extent(s)[1][1]:.3g}], "
                             f"{self.explorer.last_seconds * 1000:.0f} ms</span>")

    def _apply(self, **changes) -> None:
        try:
            img = self.explorer.update(**changes)
        except ValueError as e:
            self.status.value = f"<span class='polyinr-error' style='color:#b00'>{e}</span>"
            return
        self._show(img)

    def _on_change(self, change) -> None:
        if self._busy:
            return
        name = next(k for k, w in self.controls.items() if w is change["owner"])
        if name == "mix_preset":
            mask = level_mask(len(self.level_toggles), change["new"]).tolist()
            self._busy = True
            try:
                for t, m in zip(self.level_toggles, mask):
                    t.value = m
            finally:
                self._busy = False
            self._apply(mix_levels=tuple(i for i, m in enumerate(mask) if m))
            return
        self._apply(**{name: change["new"]})

    def _on_toggle(self, change) -> None:
        if self._busy:
            return
        self._apply(mix_levels=tuple(i for i, t in enumerate(self.level_toggles) if t.value))


def explorer_app(G, state: ExplorerState | None = None, **kw) -> ExplorerApp:
    """Build the app; display `app.widget` in a notebook."""
    return ExplorerApp(G, state, **kw)


# ---------------------------------------------------------------------------------------- benchmark

def bench_changes(G) -> list[dict]:
    """A fixed sequence of slider changes, each of which forces a new render (psi, seed and class
    changes also a new mapping output; mixing flips one middle level)."""
    mid, cls = G.cfg.levels // 2, 7 % max(G.cfg.num_classes, 1)
    return [{"psi": 0.7}, {"center_x": 0.45}, {"zoom": 2 ** 0.5}, {"seed": 1}, {"mix_levels": (mid,)}, {"cls": cls},
            {"center_y": 0.6}, {"psi": 0.9}, {"zoom": 2 ** -0.5}, {"mix_levels": ()}, {"seed": 2}, {"center_x": 0.5}]


def benchmark(G, size: int = 256, repeats: int = 12, dtype: torch.dtype | None = torch.bfloat16,
              heatmap: bool = True, app: ExplorerApp | None = None) -> dict:
    """Median seconds of an update after a slider change at size x size: `repeats` changes from
    `bench_changes(G)`, each timed from the change to the finished image (through `app`'s widgets when
    given, i.e. including the PNG encoding; otherwise `Explorer.update`). "update_cpu_seconds" is the
    median process CPU time of an update: on a machine shared with other jobs it is the steadier
    number (with one thread it equals the wall time of an idle machine). With heatmap=True also the
    time of switching the overlay on (computes all levels' maps) and of changing its level (cached)."""
    ex = app.explorer if app is not None else Explorer(G, ExplorerState(resolution=size), dtype)
    if app is not None:
        app.controls["resolution"].value = size
    else:
        ex.update(resolution=size)

    def apply(change):
        t0, c0 = time.perf_counter(), time.process_time()
        if app is None:
            ex.update(**change)
        elif "mix_levels" in change:   # flip the one toggle that differs: one callback, one render
            flip = [t for i, t in enumerate(app.level_toggles) if t.value != (i in change["mix_levels"])]
            assert len(flip) == 1, "benchmark changes flip one level at a time"
            flip[0].value = not flip[0].value
        else:
            (name, value), = change.items()
            app.controls[name].value = value
        cpu.append(time.process_time() - c0)
        return time.perf_counter() - t0

    cpu: list[float] = []
    changes = bench_changes(G)
    times = [apply(changes[i % len(changes)]) for i in range(repeats)]
    out = {"size": size, "repeats": repeats, "dtype": str(dtype).replace("torch.", ""),
           "update_seconds": statistics.median(times), "update_seconds_min": min(times),
           "update_seconds_max": max(times), "update_cpu_seconds": statistics.median(cpu),
           "threads": torch.get_num_threads(),
           "through_widgets": app is not None, "mapping_cache_hits": ex.latents.hits,
           "mapping_cache_misses": ex.latents.misses}
    if heatmap:
        L = G.cfg.levels
        out["heatmap_on_seconds"] = apply({"heatmap_level": min(3, L - 1)})
        out["heatmap_level_change_seconds"] = apply({"heatmap_level": L - 1 if L > 1 else 0})
        out["heatmap_resolution"] = min(size, ex.state.heatmap_resolution)
        apply({"heatmap_level": -1})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polyinr.explorer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time explorer updates; prints one JSON line")
    b.add_argument("--checkpoint", default="experiments/results/02_train/generator.pt")
    b.add_argument("--size", type=int, default=256)
    b.add_argument("--repeats", type=int, default=12)
    b.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    b.add_argument("--widgets", action="store_true", help="time through the ipywidgets callbacks (PNG included)")
    b.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, i.e. OMP_NUM_THREADS)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    G = load_generator(resolve(args.checkpoint)).eval()
    dtype = getattr(torch, args.dtype)
    app = ExplorerApp(G, ExplorerState(resolution=args.size), dtype=dtype) if args.widgets else None
    out = benchmark(G, args.size, args.repeats, dtype, app=app)
    out["checkpoint"] = args.checkpoint
    print(json.dumps(out))
    return 0


__all__ = ["ExplorerState", "check_state", "view_extent", "seed_z", "LatentCache", "state_ws", "to_rgb_u8",
           "heatmap_overlay", "level_maps", "render_view", "to_png", "Explorer", "ExplorerApp", "explorer_app",
           "class_names", "benchmark", "bench_changes"]

if __name__ == "__main__":
    sys.exit(main())
