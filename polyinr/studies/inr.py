"""Single-signal implicit neural representations (INRs): the baselines of the Taylor-series
notebook (`00_taylor_series`) and Poly-INR fitted to one image.

The paper's argument (section 1 of the method notes): a ReLU MLP on raw (x, y) is piecewise linear,
so it cannot carry the high-order terms of a Taylor expansion; sinusoidal encodings fix this within a
fixed frequency budget; Poly-INR multiplies its features by affine functions of the coordinates, so
the polynomial degree grows with depth. One function per model, each returning an `nn.Module` that
maps coordinates [P, 2] to values [P, C]:

- `relu_mlp`: ReLU MLP on raw coordinates (zero input Hessian almost everywhere);
- `pe_mlp`: ReLU MLP on a NeRF-style positional encoding [p, sin(2^k pi p), cos(2^k pi p)], k < n_freqs
  (Mildenhall et al. 2020), i.e. log-spaced frequencies of 1 .. 2^(n_freqs - 1) cycles per image side;
- `ff_mlp`: ReLU MLP on Gaussian Fourier features [cos(2 pi B v), sin(2 pi B v)], B ~ N(0, sigma^2)
  [m, 2], fixed (Tancik et al., NeurIPS 2020);
- `siren`: sine layers sin(omega_0 (W x + b)) with omega_0 = 30 and the SIREN initialisation
  (Sitzmann et al., NeurIPS 2020): first layer W ~ U(-1/in, 1/in), later layers
  W ~ U(-sqrt(6/in)/omega_0, sqrt(6/in)/omega_0), linear output layer;
- `poly_inr`: the Poly-INR synthesis network (`polyinr.core.model.Synthesis`) with one learned
  ws [1, L, w_dim] for the one signal, in the released form or the paper's pure form
  (`pure=True`: `polyinr.PURE`, no warp / coord_act / style_fc / clamp).

Coordinates. Every model is called with the same pixel coordinates v in [0, 1]^2, x = col / (W - 1),
y = row / (H - 1) (`polyinr.coordinate_grid` / `pixel_grid`, endpoints included), and maps them to
the range that is standard for it: p = 2 v - 1 in [-1, 1] for the ReLU, PE and SIREN networks; v
itself for Fourier features (Tancik et al. sample [0, 1)); v mapped to `coord_range` (default
[0, 1], the native grid) for Poly-INR. So every model is fitted and scored on exactly the same pixels.

Images live in [-1, 1] ([C, H, W], as everywhere in `polyinr`); no model has an output activation, and
PSNR clamps predictions to [-1, 1] and uses a peak-to-peak range of 2 (the same number as PSNR on
[0, 1] images with peak 1).

`build_inr(name, budget, out_channels)` picks the width so that the number of trainable parameters
(everything that receives gradients, Poly-INR's ws included; the fixed Fourier matrix B is a buffer)
is within 5 % of the budget. `fit` is full-batch Adam on the mean squared error with a PSNR history.

Shape letters: P pixels (points), C channels, H, W image size, L levels, n width.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from ..core.checkpoint import restore_state, state_of
from ..core.config import PURE, get_preset
from ..core.files import atomic_save, write_json
from ..core.grid import coordinate_grid
from ..core.images import to_unit
from ..core.model import Synthesis, count_parameters
from ..core.progress import progress_bar
from ..evaluation.quality import psnr
from ..training.data import letter_fonts, render_letter

MODEL_NAMES = ("relu", "pe", "ff", "siren", "polyinr", "polyinr_pure")


# ----------------------------------------------------------------------------------------------
# Baselines


class MLP(nn.Module):
    """Linear(in, width) -> act -> [Linear(width, width) -> act] x (depth - 1) -> Linear(width, out)."""

    def __init__(self, in_features: int, width: int, depth: int, out_features: int):
        super().__init__()
        dims = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


class PositionalEncoding(nn.Module):
    """Encoding of p in [-1, 1]^d: [p, sin(2^e pi p), cos(2^e pi p)] for n_freqs log-spaced exponents
    e = linspace(0, max_log2, n_freqs), i.e. 2^e cycles per image side. The default max_log2 =
    n_freqs - 1 gives NeRF's integer octaves e = 0, 1, ..., n_freqs - 1; Tancik et al.'s dense
    "positional encoding" is n_freqs = 128, max_log2 = 6 (5 for text), include_input=False."""

    def __init__(self, n_freqs: int, include_input: bool = True, max_log2: float | None = None):
        super().__init__()
        top = float(n_freqs - 1) if max_log2 is None else float(max_log2)
        # on the CPU even under a meta-device context (meta linspace imports torch's decompositions: seconds)
        exps = torch.linspace(0.0, top, n_freqs, device="cpu") if n_freqs > 1 else torch.zeros(1, device="cpu")
        self.register_buffer("freqs", math.pi * 2.0 ** exps, persistent=False)
        self.include_input = include_input

    def out_features(self, in_features: int) -> int:
        return in_features * (2 * len(self.freqs) + int(self.include_input))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        arg = (p[..., None, :] * self.freqs[:, None]).flatten(-2)             # [P, k * d]
        parts = [p] if self.include_input else []
        return torch.cat(parts + [torch.sin(arg), torch.cos(arg)], -1)


class FourierFeatures(nn.Module):
    """Gaussian random Fourier features of v in [0, 1]^d: [cos(2 pi B v), sin(2 pi B v)],
    B ~ N(0, sigma^2) of shape [m, d], drawn once from `seed` and kept fixed (a buffer)."""

    def __init__(self, in_features: int, n_features: int, sigma: float, seed: int = 0):
        super().__init__()
        g = torch.Generator(device="cpu").manual_seed(seed)
        B = torch.randn(n_features, in_features, generator=g, device="cpu") * sigma
        self.register_buffer("B", B)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * v @ self.B.T                                      # [P, m]
        return torch.cat([torch.cos(arg), torch.sin(arg)], -1)


class CoordMLP(nn.Module):
    """A ReLU MLP on (encoded) coordinates. `centre=True` maps v in [0, 1] to p = 2 v - 1 first."""

    def __init__(self, encoding: nn.Module | None, in_features: int, width: int, depth: int, out_features: int,
                 centre: bool = True):
        super().__init__()
        self.encoding = encoding
        self.centre = centre
        self.mlp = MLP(in_features, width, depth, out_features)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = 2 * coords - 1 if self.centre else coords
        if self.encoding is not None:
            x = self.encoding(x)
        return self.mlp(x)


class SineLayer(nn.Module):
    """sin(omega_0 (W x + b))."""

    def __init__(self, in_features: int, out_features: int, omega_0: float, first: bool):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)   # bias: PyTorch's default U(-1/sqrt(in), .)
        self.omega_0 = omega_0
        bound = 1 / in_features if first else math.sqrt(6 / in_features) / omega_0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class Siren(nn.Module):
    """SIREN on p = 2 v - 1 in [-1, 1]^2: `depth` sine layers of `width`, then a linear layer
    initialised like a hidden layer, U(-sqrt(6/in)/omega_0, +)."""

    def __init__(self, width: int, depth: int, out_features: int, omega_0: float = 30.0, in_features: int = 2):
        super().__init__()
        dims = [in_features] + [width] * depth
        self.hidden = nn.Sequential(*(SineLayer(a, b, omega_0, first=(i == 0))
                                      for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))))
        self.out = nn.Linear(width, out_features)
        bound = math.sqrt(6 / width) / omega_0
        with torch.no_grad():
            self.out.weight.uniform_(-bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(2 * coords - 1))


def relu_mlp(out_channels: int = 3, width: int = 256, depth: int = 4) -> CoordMLP:
    """ReLU MLP on raw coordinates p in [-1, 1]^2 (`depth` hidden layers of `width`)."""
    return CoordMLP(None, 2, width, depth, out_channels)


def pe_mlp(out_channels: int = 3, width: int = 256, depth: int = 4, n_freqs: int = 8, include_input: bool = True,
           max_log2: float | None = None) -> CoordMLP:
    """ReLU MLP on the positional encoding of p in [-1, 1]^2 (`PositionalEncoding`; by default
    NeRF-style octaves 2^k pi, k < n_freqs: 1 .. 2^(n_freqs - 1) cycles per image side, and 8 octaves
    reach the Nyquist rate of a 256 px image)."""
    enc = PositionalEncoding(n_freqs, include_input, max_log2)
    return CoordMLP(enc, enc.out_features(2), width, depth, out_channels)


def ff_mlp(out_channels: int = 3, width: int = 256, depth: int = 4, n_features: int = 256, sigma: float = 10.0,
           seed: int = 0) -> CoordMLP:
    """ReLU MLP on Gaussian Fourier features of v in [0, 1]^2 (Tancik et al.: m = 256, sigma = 10)."""
    return CoordMLP(FourierFeatures(2, n_features, sigma, seed), 2 * n_features, width, depth, out_channels,
                    centre=False)


def siren(out_channels: int = 3, width: int = 256, depth: int = 4, omega_0: float = 30.0) -> Siren:
    """SIREN (omega_0 = 30, the paper's initialisation) on p in [-1, 1]^2."""
    return Siren(width, depth, out_channels, omega_0)


# ----------------------------------------------------------------------------------------------
# Poly-INR as a single-signal INR


class PolyINR(nn.Module):
    """`polyinr.core.model.Synthesis` with one learned latent ws [1, L, w_dim]: coords [P, 2] -> [P, C].

    The per-level affine maps A_i (and the warp, in the released form) come from ws through the
    synthesis heads, exactly as in the generator; for one signal they are free parameters in
    effect. v in [0, 1] is mapped linearly to `coord_range` before the synthesis."""

    def __init__(self, cfg, coord_range: tuple[float, float] = (0.0, 1.0), ws_std: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.synthesis = Synthesis(cfg)
        self.ws = nn.Parameter(torch.randn(1, cfg.levels, cfg.w_dim) * ws_std)
        self.coord_range = (float(coord_range[0]), float(coord_range[1]))

    def forward(self, coords: torch.Tensor, return_levels: bool = False):
        lo, hi = self.coord_range
        out = self.synthesis(self.ws, lo + (hi - lo) * coords, return_levels=return_levels)
        if return_levels:
            return out[0][0], {k: [t[0] for t in v] for k, v in out[1].items()}
        return out[0]                                                      # [P, C]


def poly_inr(out_channels: int = 3, width: int = 64, levels: int = 10, pure: bool = False, w_dim: int = 16,
             coord_range: tuple[float, float] = (0.0, 1.0), ws_std: float = 1.0, **overrides) -> PolyINR:
    """Poly-INR synthesis fitted to one signal. `pure=True` is the paper's equation
    (`polyinr.PURE`); other `ModelConfig` fields (slope, clamp, coord_init, ...) pass through."""
    cfg = get_preset("letters", num_classes=0, width=width, levels=levels, w_dim=w_dim, img_channels=out_channels,
                     **{**(PURE if pure else {}), **overrides})
    return PolyINR(cfg, coord_range=coord_range, ws_std=ws_std)


MODELS = {"relu": relu_mlp, "pe": pe_mlp, "ff": ff_mlp, "siren": siren, "polyinr": poly_inr,
          "polyinr_pure": partial(poly_inr, pure=True)}


def make_inr(name: str, out_channels: int = 3, **kw) -> nn.Module:
    """The model `name` (one of MODEL_NAMES) with keyword options of its builder function."""
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; expected one of {list(MODELS)}")
    return MODELS[name](out_channels=out_channels, **kw)


def count_at_width(name: str, width: int, out_channels: int = 3, **kw) -> int:
    """Trainable parameters of model `name` (one of MODEL_NAMES) at `width`: built on the CPU when small (milliseconds), on
    the meta device (no memory) when wide."""
    if width <= 1024:
        with torch.random.fork_rng(devices=[]):                    # leave the caller's RNG stream alone
            return count_parameters(make_inr(name, out_channels, width=width, **kw))
    with torch.device("meta"):
        return count_parameters(make_inr(name, out_channels, width=width, **kw))


def width_for_budget(name: str, budget: int, out_channels: int = 3, max_width: int = 8192, **kw) -> int:
    """The width whose parameter count is closest to `budget` (count grows with width).

    Every model's count is a quadratic in the width (w^2 from the hidden products, w from the
    first and last layers and biases), so three counts fix it and the quadratic is solved; the
    answer is checked against the real count and a bisection is the fallback."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: expected a positive integer number of parameters, got {budget!r}")
    counts: dict[int, int] = {}

    def count(width: int) -> int:
        if width not in counts:
            counts[width] = count_at_width(name, width, out_channels, **kw)
        return counts[width]

    n1, n2, n3 = count(width=1), count(width=2), count(width=3)
    a = (n3 - 2 * n2 + n1) / 2
    b = n2 - n1 - 3 * a
    c = n1 - a - b
    top = a * max_width ** 2 + b * max_width + c
    if top < budget and (count(width=16) != a * 256 + b * 16 + c or count(width=max_width) < budget):
        raise ValueError(f"budget: {budget} parameters need a {name} wider than {max_width}")
    if a > 0:
        root = (-b + math.sqrt(max(b * b - 4 * a * (c - budget), 0.0))) / (2 * a)
    else:
        root = (budget - c) / b
    guess = min(max(int(root), 1), max_width - 1)
    if count(width=guess) == a * guess ** 2 + b * guess + c:             # the quadratic is exact
        lo = guess if count(width=guess) < budget else guess - 1
        lo = max(lo, 1)
        while lo < max_width and count(width=lo + 1) < budget:
            lo += 1
        while lo > 1 and count(width=lo) >= budget:
            lo -= 1
        lo += 1                                                   # smallest width with count >= budget
    else:
        lo, hi = 1, max_width
        while lo < hi:                                            # smallest width with count >= budget
            mid = (lo + hi) // 2
            if count(width=mid) >= budget:
                hi = mid
            else:
                lo = mid + 1
    cands = [w for w in (lo - 1, lo) if w >= 1]
    return min(cands, key=lambda w: abs(count(width=w) - budget))


def build_inr(name: str, budget: int, out_channels: int = 3, tol: float = 0.05, **kw) -> nn.Module:
    """Model `name` whose trainable-parameter count is within `tol` (5 %) of `budget`; the width
    is searched, every other option (depth, levels, n_freqs, ...) is as given."""
    width = width_for_budget(name, budget, out_channels, **kw)
    model = make_inr(name, out_channels, width=width, **kw)
    n = count_parameters(model)
    if abs(n - budget) > tol * budget:
        raise ValueError(f"budget: {name} cannot reach {budget} parameters within {tol:.0%} by its width "
                         f"(closest: width {width}, {n} parameters); change the budget or the other options")
    model.width = width
    return model


# ----------------------------------------------------------------------------------------------
# The generalisation protocol of Tancik et al. (2020), "2D image regression"

# Published test PSNR (dB) of their Table 1 (ReLU MLP with no encoding, the basic encoding
# [cos 2 pi v, sin 2 pi v], their dense positional encoding, Gaussian Fourier features). Their
# natural images are DIV2K photographs and their text images are their own renderings: ours differ.
PUBLISHED_GENERALIZATION = {
    "natural": {"relu": 19.32, "basic": 21.72, "pe": 24.95, "ff": 25.57},
    "text": {"relu": 18.40, "basic": 20.48, "pe": 27.57, "ff": 30.47},
}
# Their per-data-set settings: 512^2 images, trained on the 256^2 every-other-pixel grid, scored on
# the held-out pixels (odd rows and columns); "4 layers" = 3 hidden ReLU layers of 256 + the output
# layer; m = 256 features (posenc: 128 log-spaced frequencies per axis up to 2^scale cycles);
# 2000 full-batch Adam steps at lr 1e-3 (1e-2 for the unencoded and basic networks on natural images).
FOURIER_PROTOCOL = {
    "natural": {"pe_max_log2": 6.0, "sigma": 10.0, "lr": {"relu": 1e-2, "basic": 1e-2, "pe": 1e-3, "ff": 1e-3}},
    "text": {"pe_max_log2": 5.0, "sigma": 14.0, "lr": {"relu": 1e-3, "basic": 1e-3, "pe": 1e-3, "ff": 1e-3}},
}


def generalization_model(name: str, kind: str, out_channels: int = 3, width: int = 256, depth: int = 3,
                         seed: int = 0, **poly_kw) -> nn.Module:
    """The model `name` of the generalisation protocol on data `kind` ("natural" | "text"):
    relu / basic / pe / ff / siren with Tancik et al.'s architecture (`depth` hidden layers of
    `width`; their encodings, m = 256); polyinr / polyinr_pure at the parameter count of the ff
    network (within 5 %), with `poly_kw` (levels, coord_range, ...)."""
    if kind not in FOURIER_PROTOCOL:
        raise ValueError(f"kind: expected one of {list(FOURIER_PROTOCOL)}, got {kind!r}")
    p = FOURIER_PROTOCOL[kind]
    if name == "relu":
        return relu_mlp(out_channels, width, depth)
    if name == "basic":
        return pe_mlp(out_channels, width, depth, n_freqs=1, include_input=False, max_log2=0.0)
    if name == "pe":
        return pe_mlp(out_channels, width, depth, n_freqs=128, include_input=False, max_log2=p["pe_max_log2"])
    if name == "ff":
        return ff_mlp(out_channels, width, depth, n_features=256, sigma=p["sigma"], seed=seed)
    if name == "siren":
        return siren(out_channels, width, depth)
    if name in ("polyinr", "polyinr_pure"):
        budget = count_parameters(ff_mlp(out_channels, width, depth, n_features=256, sigma=p["sigma"], seed=seed))
        return build_inr(name, budget, out_channels, **poly_kw)
    raise ValueError(f"name: unknown model {name!r}; expected relu, basic, pe, ff, siren, polyinr or polyinr_pure")


# ----------------------------------------------------------------------------------------------
# Fitting


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of pixel sets [P, C] in [-1, 1] (`polyinr.evaluation.quality.psnr`)."""
    return float(psnr(to_unit(pred)[None], to_unit(target)[None]))


@torch.no_grad()
def predict(model: nn.Module, coords: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """model(coords) in chunks of pixels, without gradients: [P, C]."""
    return torch.cat([model(coords[i:i + chunk]) for i in range(0, coords.shape[0], chunk)])


def resolve_device(device) -> torch.device:
    """"auto" = CUDA when available, else the CPU; otherwise torch.device(device), checked to exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    return dev


def fit(model: nn.Module, coords: torch.Tensor, target: torch.Tensor, steps: int, lr: float = 1e-3,
        schedule: str = "constant", log_every: int = 10, test: tuple | None = None, test_every: int | None = None,
        grad_clip: float | None = None, state_path=None, checkpoint_every: int = 100, state_key: dict | None = None,
        progress: str | None = None, device=None) -> dict:
    """Full-batch Adam on the mean squared error of model(coords) [P, C] against target [P, C], on
    `device` (the model is moved there; default: where the model is; the data follow the model).

    schedule: "constant" or "cosine" (lr decays to lr / 100 over `steps`). The PSNR history is the
    training PSNR of the forward pass of each logged step (before its update); `test` = (coords,
    target) is scored every `test_every` steps and at the end. Returns {"steps", "psnr",
    "test_steps", "test_psnr", "final_psnr", "final_test_psnr", "seconds", "step_seconds_median",
    "diverged", "resumed_from"}; "seconds" is wall time (a resumed fit adds its earlier runs), and the
    median step time is robust to pauses of the process.

    Resumable long fits: with `state_path`, the model, optimiser, schedule, step and history are
    saved there atomically every `checkpoint_every` steps (with `state_key`, a JSON-able description
    of the fit), and a fit started while that file exists continues from it, so a killed fit loses at
    most `checkpoint_every` steps and ends bit-identical to an uninterrupted one (full batch: nothing
    random inside the loop). A state file whose key differs from `state_key` is an error, never
    silently reused. The file is removed when the fit completes. `progress`: a tqdm label (None = quiet)."""
    # Past 60 lines with its docstring; the loop body is the fit's whole recipe and reads best in one place.
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule: expected 'constant' or 'cosine', got {schedule!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: expected a positive number of steps, got {checkpoint_every}")
    if device is not None:
        model.to(resolve_device(device))
    dev = next(model.parameters()).device
    coords, target = coords.to(dev), target.to(dev)
    if test is not None:
        test = (test[0].to(dev), test[1].to(dev))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 100) if schedule == "cosine"
             else None)
    hist = {"steps": [], "psnr": [], "test_steps": [], "test_psnr": [], "diverged": False, "resumed_from": None,
            "step_seconds": []}
    key = json.dumps({"steps": steps, "lr": lr, "schedule": schedule, "log_every": log_every,
                      "test_every": test_every, "grad_clip": grad_clip, "points": int(coords.shape[0]),
                      "fit": state_key}, sort_keys=True)
    state = {"model": model, "opt": opt, "sched": sched}
    state_path = Path(state_path) if state_path is not None else None
    start, spent = _resume_fit(state_path, key, state, hist)

    bar = progress_bar(total=steps, initial=start, desc=progress, mininterval=120, leave=True, disable=progress is None)
    t0 = time.perf_counter()
    step = start
    for step in range(start, steps):
        t_step = time.perf_counter()
        pred = model(coords)
        loss = F.mse_loss(pred, target)
        if not torch.isfinite(loss):
            hist["diverged"] = True
            break
        if step % log_every == 0:
            hist["steps"].append(step)
            hist["psnr"].append(_psnr(pred, target))
        if test is not None and test_every and step % test_every == 0:
            hist["test_steps"].append(step)
            hist["test_psnr"].append(_psnr(predict(model, test[0]), test[1]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        hist["step_seconds"].append(time.perf_counter() - t_step)
        bar.update(1)
        if state_path is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            atomic_save({"key": key, "step": step + 1, "seconds": spent + time.perf_counter() - t0, **state_of(state),
                         "hist": {k: v for k, v in hist.items() if k != "resumed_from"}}, state_path)
    bar.close()
    hist["seconds"] = spent + time.perf_counter() - t0
    _final_scores(model, coords, target, test, hist, steps, steps if not hist["diverged"] else step)
    if state_path is not None and state_path.is_file():
        state_path.unlink()
    return hist


def _resume_fit(state_path: Path | None, key: str, state: dict, hist: dict) -> tuple[int, float]:
    """Continue a fit from `state_path` when it exists (its key must match): restores `state` and the
    history in place; returns (first step, seconds already spent)."""
    if state_path is None or not state_path.is_file():
        return 0, 0.0
    st = torch.load(state_path, map_location="cpu", weights_only=True)
    if st.get("key") != key:
        raise ValueError(f"state_path: {state_path} holds the state of a different fit "
                         f"({st.get('key')}); expected {key}. Delete it or choose another path")
    restore_state(st, state)
    hist.update(st["hist"])
    hist["resumed_from"] = int(st["step"])
    return int(st["step"]), float(st["seconds"])


def _final_scores(model, coords, target, test, hist: dict, steps: int, last_step: int) -> None:
    """Median step time and the final training PSNR (at `last_step`) and test PSNR (at `steps`),
    appended to the history."""
    hist["step_seconds_median"] = float(np.median(hist["step_seconds"])) if hist["step_seconds"] else float("nan")
    final = predict(model, coords)
    hist["final_psnr"] = _psnr(final, target) if torch.isfinite(final).all() else float("nan")
    hist["steps"].append(last_step)
    hist["psnr"].append(hist["final_psnr"])
    if test is not None:
        out = predict(model, test[0])
        hist["final_test_psnr"] = _psnr(out, test[1]) if torch.isfinite(out).all() else float("nan")
        hist["test_steps"].append(steps)
        hist["test_psnr"].append(hist["final_test_psnr"])


def generalization_fit(name: str, kind: str, image: str, size: int, steps: int, lr: float,
                       schedule: str = "constant", seed: int = 0, cache_dir=None, checkpoint_every: int = 100,
                       progress: bool = False, device=None, **poly_kw) -> dict:
    """One fit of the generalisation protocol: model `name` (`generalization_model`) on the image
    `image` (`load_image`; "text" for the text image) at `size`², trained on the every-other-pixel
    grid for `steps` full-batch Adam steps, scored on the held-out pixels and on the full grid.

    Returns {"key", "params", "train", "heldout", "full", "steps", "psnr", "test_steps", "test_psnr",
    "seconds", "seconds_per_step" (the median step), "threads", "torch", "cached"}. With `cache_dir`, the result is kept
    there as `<kind>-<name>-<hash>.json` (the hash covers every setting in "key") and returned from
    there on later calls with the same settings, and the running fit is checkpointed next to it every
    `checkpoint_every` steps (`fit(state_path=...)`), so an interrupted protocol resumes where it
    stopped. Results are only reused for identical settings; delete the folder to recompute. `device`:
    where the fit runs ("cpu" by default, "cuda", "auto"); a fit on another device than the CPU is a
    different cache entry (its rounding differs)."""

    key = {"protocol": "tancik2020-every-other-pixel", "name": name, "kind": kind, "image": image, "size": size,
           "steps": steps, "lr": lr, "schedule": schedule, "seed": seed,
           "poly_kw": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(poly_kw.items())}}
    dev = resolve_device(device if device is not None else "cpu")
    if dev.type != "cpu":
        key["device"] = dev.type
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    result_path = state_path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        result_path = cache_dir / f"{kind}-{name}-{digest}.json"
        state_path = cache_dir / f"{kind}-{name}-{digest}.state.pt"
        if result_path.is_file():
            cached = json.loads(result_path.read_text())
            if cached.get("key") == key:
                return {**cached, "cached": True}
    img = load_image(image, size, seed=seed)
    coords, target = image_pixels(img)
    idx = every_other_pixel(size, size)
    torch.manual_seed(seed)
    model = generalization_model(name, kind, img.shape[0], seed=seed, **poly_kw)
    h = fit(model, coords[idx["train"]], target[idx["train"]], steps, lr=lr, schedule=schedule,
            log_every=max(1, steps // 50), test=(coords[idx["heldout"]], target[idx["heldout"]]),
            test_every=max(1, steps // 10), state_path=state_path, checkpoint_every=checkpoint_every,
            state_key=key, progress=f"{kind} {name}" if progress else None, device=dev)
    out = {"key": key, "params": count_parameters(model), "train": h["final_psnr"], "heldout": h["final_test_psnr"],
           "full": _psnr(predict(model, coords.to(dev)), target.to(dev)), "steps": h["steps"], "psnr": h["psnr"],
           "test_steps": h["test_steps"], "test_psnr": h["test_psnr"], "diverged": h["diverged"],
           "resumed_from": h["resumed_from"], "seconds": h["seconds"], "seconds_per_step": h["step_seconds_median"],
           "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(dev)}
    if result_path is not None:
        write_json(result_path, out)
    return {**out, "cached": False}


# ----------------------------------------------------------------------------------------------
# Images


def _resize(img, size: int):
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))   # centre square
    return img if s == size else img.resize((size, size), Image.LANCZOS)


def text_image(size: int = 512, seed: int = 0) -> np.ndarray:
    """An RGB text image, uint8 [size, size, 3]: lines of random words in random DejaVu faces, sizes and
    colours on a white background, filling the canvas (our stand-in for Tancik et al.'s text images,
    which are different images)."""
    import matplotlib
    rng = np.random.default_rng(seed)
    fonts = sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("DejaVu*.ttf"))
    words = ("implicit neural polynomial Taylor series Fourier feature sine network affine coordinate "
             "degree level pixel render image field signal frequency spectral bias kernel").split()
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = -size // 64
    while y < size:
        fs = int(rng.integers(size // 28, size // 10))
        font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), fs)
        text = " ".join(rng.choice(words, size=6))
        colour = tuple(int(c) for c in rng.integers(0, 200, size=3))
        draw.text((int(rng.integers(-size // 4, 0)), y), text, fill=colour, font=font)
        y += int(fs * rng.uniform(1.0, 1.25))
    return np.asarray(canvas)


IMAGE_NAMES = ("camera", "astronaut", "grace_hopper", "letter", "text")


def load_image(name: str, size: int = 256, seed: int = 0) -> torch.Tensor:
    """A test image as float32 [C, size, size] in [-1, 1] (centre square crop, Lanczos resize):
    - camera: scikit-image's cameraman (512^2, greyscale, CC0);
    - astronaut: scikit-image's astronaut (512^2, RGB, NASA, public domain);
    - grace_hopper: matplotlib's sample image (512 x 600, RGB, public domain);
    - letter: a large bold serif 'R' from `polyinr.training.data.render_letter` (greyscale, sharp edges);
    - text: `text_image(512, seed)` (RGB)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size: expected an integer >= 2, got {size!r}")
    if name == "camera":
        from skimage import data
        img = Image.fromarray(data.camera())
    elif name == "astronaut":
        from skimage import data
        img = Image.fromarray(data.astronaut())
    elif name == "grace_hopper":
        from matplotlib import cbook
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            img = Image.open(f).convert("RGB")
            img.load()
    elif name == "letter":
        font = next(f for f in letter_fonts() if f["name"] == "DejaVuSerif-Bold")
        arr = render_letter(font, "R", {"scale": 0.85, "angle": 0.0, "dx": 0.0, "dy": 0.0}, size)
        img = Image.fromarray(arr)
    elif name == "text":
        img = Image.fromarray(text_image(512, seed))
    else:
        raise ValueError(f"name: unknown image {name!r}; expected one of {list(IMAGE_NAMES)}")
    arr = np.asarray(_resize(img, size), dtype=np.float32) / 127.5 - 1
    t = torch.from_numpy(arr.copy())
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


def image_pixels(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[C, H, W] -> (coords [H*W, 2] in [0, 1]^2 (x, y; row-major), values [H*W, C])."""
    C, H, W = img.shape
    return coordinate_grid(H, W), img.permute(1, 2, 0).reshape(H * W, C)


def pixels_image(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """values [H*W, C] (row-major) -> [C, H, W]."""
    return values.T.reshape(-1, height, width)


def every_other_pixel(height: int, width: int) -> dict:
    """Index sets of the Fourier-feature generalisation protocol on a (height x width) image:
    "train" = even rows and even columns (the (H/2 x W/2) grid), "heldout" = odd rows and odd
    columns (Tancik et al.'s test pixels), "all" = every pixel. Row-major flat indices."""
    r = torch.arange(height)[:, None] * width
    c = torch.arange(width)[None, :]
    idx = (r + c)
    return {"train": idx[::2, ::2].reshape(-1), "heldout": idx[1::2, 1::2].reshape(-1), "all": idx.reshape(-1)}


# ----------------------------------------------------------------------------------------------
# Derivatives and polynomials (the 1-D part of the notebook)


def input_hessian(model: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    """d^2 model(v)_c / dv_j dv_k at each point: [P, C, 2, 2] (float as the model). Exact per point,
    because every model evaluates each point independently (no pixel interaction)."""
    v = coords.detach().clone().requires_grad_(True)
    out = model(v)                                                    # [P, C]
    H = []
    for c in range(out.shape[1]):
        g, = torch.autograd.grad(out[:, c].sum(), v, create_graph=True)      # [P, 2]
        rows = [torch.autograd.grad(g[:, j].sum(), v, retain_graph=True, allow_unused=True)[0]
                for j in range(v.shape[1])]
        rows = [torch.zeros_like(v) if r is None else r for r in rows]
        H.append(torch.stack(rows, 1))                                      # [P, 2, 2]
    return torch.stack(H, 1).detach()


def derivative_along_x(model: nn.Module, coords: torch.Tensor, order: int = 2, channel: int = 0) -> torch.Tensor:
    """d^order model(v)_channel / dx^order at coords [P, 2]: [P] (autograd)."""
    v = coords.detach().clone().requires_grad_(True)
    d = model(v)[:, channel]
    for _ in range(order):
        g, = torch.autograd.grad(d.sum(), v, create_graph=True, allow_unused=True)
        if g is None:
            return torch.zeros(v.shape[0], dtype=v.dtype)
        d = g[:, 0]
    return d.detach()


def sinusoid_sum(x: torch.Tensor, terms) -> torch.Tensor:
    """f(x) = sum_j amp_j sin(freq_j x + phase_j) for terms [(amp, freq, phase), ...]."""
    return sum(a * torch.sin(w * x + ph) for a, w, ph in terms)


def sinusoid_taylor_coefficients(terms, x0: float, degree: int) -> list[float]:
    """Exact Taylor coefficients f^(k)(x0) / k!, k = 0..degree, of `sinusoid_sum(x, terms)`:
    d^k/dx^k sin(w x + ph) = w^k sin(w x + ph + k pi / 2)."""
    return [sum(a * w ** k * math.sin(w * x0 + ph + k * math.pi / 2) for a, w, ph in terms) / math.factorial(k)
            for k in range(degree + 1)]


def taylor_polynomial(coeffs, x: torch.Tensor, x0: float) -> torch.Tensor:
    """sum_k coeffs[k] (x - x0)^k (Horner)."""
    out = torch.zeros_like(x)
    for c in reversed(coeffs):
        out = out * (x - x0) + c
    return out


def polynomial_fit_residual(t: np.ndarray, values: np.ndarray, degree: int) -> float:
    """Relative residual ||y - p(t)|| / ||y|| of the least-squares Chebyshev fit of degree `degree`
    (t scaled to [-1, 1]); values [T] or [T, K] (each column fitted)."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64).reshape(len(t), -1)
    s = 2 * (t - t.min()) / (t.max() - t.min()) - 1
    coef = np.polynomial.chebyshev.chebfit(s, y, degree)
    res = y - np.polynomial.chebyshev.chebval(s, coef).T
    return float(np.linalg.norm(res) / max(np.linalg.norm(y), 1e-300))


def fitted_degree(t: np.ndarray, values: np.ndarray, max_degree: int, rel_tol: float = 1e-9) -> tuple[int, list[float]]:
    """The lowest degree whose least-squares polynomial fit leaves a relative residual below
    `rel_tol`, and the residuals for degrees 0..max_degree (max_degree + 1 if none does)."""
    res = [polynomial_fit_residual(t, values, d) for d in range(max_degree + 1)]
    deg = next((d for d, r in enumerate(res) if r < rel_tol), max_degree + 1)
    return deg, res


def discrete_orthonormal_polynomials(n: int, degree: int) -> np.ndarray:
    """[n, degree + 1] orthonormal basis (float64) of the polynomials of degree <= `degree` sampled on
    n equispaced points of [-1, 1] (endpoints included; the pixel-centre grid of `coordinate_grid`):
    column k has degree k. Built by the discrete Stieltjes procedure with full re-orthogonalisation,
    which stays orthonormal to rounding for every degree up to n - 1 (a Vandermonde matrix does not)."""
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    if not (isinstance(degree, int) and 0 <= degree < n):
        raise ValueError(f"degree: expected an integer in [0, {n - 1}] for {n} points, got {degree!r}")
    x = np.linspace(-1.0, 1.0, n)
    Q = np.empty((n, degree + 1))
    Q[:, 0] = 1.0 / math.sqrt(n)
    for k in range(1, degree + 1):
        v = x * Q[:, k - 1]
        for _ in range(2):                       # Gram-Schmidt twice ("twice is enough")
            v -= Q[:, :k] @ (Q[:, :k].T @ v)
        Q[:, k] = v / np.linalg.norm(v)
    return Q


def polynomial_bound_psnr(img: torch.Tensor, degrees, total: bool = True) -> dict:
    """PSNR of the best (least-squares) polynomial approximation of img [C, H, W] in [-1, 1] for
    each degree d in `degrees`: {d: psnr}. `total=True`: polynomials of total degree <= d
    (x^p y^q, p + q <= d), exactly the functions a pure Poly-INR with d levels and identity
    activations can express, and what each linear region of the LeakyReLU forms is; so this is the
    best that degree alone can deliver. `total=False`: degree <= d in x and in y (a superset).

    Exact and cheap on a full grid: with discrete orthonormal bases Q_y, Q_x (column k of degree k),
    the products Q_y[:, q] Q_x[:, p] are orthonormal and those with p + q <= d span the total-degree
    space, so the projection keeps the coefficients C = Q_y^T I Q_x with p + q <= d."""
    if not (isinstance(img, torch.Tensor) and img.dim() == 3):
        raise ValueError(f"img: expected a tensor [C, H, W], got {getattr(img, 'shape', type(img).__name__)}")
    arr = img.detach().double().cpu().numpy()
    C, H, W = arr.shape
    Qy, Qx = discrete_orthonormal_polynomials(H, H - 1), discrete_orthonormal_polynomials(W, W - 1)
    coef = np.einsum("hq,chw,wp->cqp", Qy, arr, Qx, optimize=True)          # [C, H, W] coefficients
    q, p = np.arange(H)[:, None], np.arange(W)[None, :]
    out = {}
    for d in degrees:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"degrees: expected non-negative integers, got {d!r}")
        keep = (p + q <= d) if total else ((p <= d) & (q <= d))
        approx = np.einsum("hq,cqp,wp->chw", Qy, coef * keep, Qx, optimize=True)
        mse = float(np.mean((np.clip(approx, -1, 1) - arr) ** 2))
        out[int(d)] = float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)
    return out


__all__ = ["MODEL_NAMES", "MODELS", "PUBLISHED_GENERALIZATION", "FOURIER_PROTOCOL", "generalization_model", "resolve_device", "IMAGE_NAMES", "relu_mlp", "pe_mlp", "ff_mlp", "siren", "poly_inr", "PolyINR",
           "make_inr", "build_inr", "count_at_width", "width_for_budget", "predict", "fit", "load_image",
           "text_image", "image_pixels", "pixels_image", "every_other_pixel", "input_hessian", "derivative_along_x",
           "sinusoid_sum", "sinusoid_taylor_coefficients", "taylor_polynomial", "polynomial_fit_residual", "fitted_degree",
           "discrete_orthonormal_polynomials", "polynomial_bound_psnr", "generalization_fit"]
