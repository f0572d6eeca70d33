"""The paper's qualitative experiments as small functions on a generator (Poly-INR, section 4.4 and
Figs. 1, 5-8): per-level heat-maps, extrapolation beyond the frame, rendering at resolutions never
trained, interpolation in W and Z, style mixing, and the measurements that put a number on each.

Conventions: generator images live in [-1, 1], [B, C, H, W] (PSNR / SSIM live in
`polyinr.evaluation.quality`, fitting codes to images in `polyinr.studies.inversion`). ws are
[B, L, w_dim] (L levels). Functions are pure where possible: tensors in, tensors or dicts of tensors
out; rendering runs under inference mode. Shape letters: B batch, T steps, K conditions, L levels, n
channels, P pixels, C image channels, H, W image size.

Level groups follow the paper's reading of a 10-level model: coarse 0-3, middle 4-6, fine 7-9
(`level_groups`); other depths are split in the same proportions.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from ..core.grid import UNIT, Extent, coordinate_grid, pixel_center_extent, pixel_grid
from ..core.images import to_unit
from ..core.model import check_classes, flops_per_pixel
from ..core.render import as_image, render, render_coords, synthesize

# ----------------------------------------------------------------------------------------------
# What a generator is: its classes and whether it is a letters model

LETTER_NAMES = [chr(ord("A") + i) for i in range(26)]


def is_letters_model(G) -> bool:
    """True for a generator trained on the letters data: the notebooks' letters-only parts (the
    letters classifier's votes, references rendered from the fonts) apply to it alone. Checkpoints
    record their dataset; older ones without it count as letters when 26-class and greyscale."""
    dataset = getattr(G, "dataset", None)
    if dataset is not None:
        return dataset == "letters"
    return G.cfg.num_classes == 26 and G.cfg.img_channels == 1


def letters_only(G, what: str) -> bool:
    """Whether the letters-only part `what` runs for G; prints why it is skipped when it does not."""
    if is_letters_model(G):
        return True
    print(f"skipped: {what} needs a letters model; this generator was trained on "
          f"{getattr(G, 'dataset', None) or 'other data'} ({G.cfg.num_classes or 'no'} classes, "
          f"{G.cfg.img_channels} channel{'s' if G.cfg.img_channels > 1 else ''})")
    return False


def class_names(G) -> list[str]:
    """Display names of G's classes (one entry, "-", for an unconditional model): the names stored in its
    checkpoint, A-Z for a letters model, the ImageNet class names (shipped with timm) for a 1000-class
    model trained on ImageNet, else the class numbers."""
    n = G.cfg.num_classes
    if getattr(G, "class_names", None) and len(G.class_names) == n:
        return list(G.class_names)
    if n == 0:
        return ["-"]
    if is_letters_model(G):
        return list(LETTER_NAMES)
    if n == 1000 and "imagenet" in str(getattr(G, "dataset", None) or getattr(G, "preset", None) or ""):
        from timm.data import ImageNetInfo
        info = ImageNetInfo()
        first = [info.index_to_description(i).split(",")[0].strip() for i in range(n)]   # "tench, Tinca tinca"
        twice = {name for name in first if first.count(name) > 1}                       # e.g. the two "crane"s
        return [f"{name} ({i})" if name in twice else name for i, name in enumerate(first)]
    return [str(i) for i in range(n)]


def class_ids(G, spec: str, count: int | None = None) -> torch.Tensor:
    """Class ids picked by `spec`: for a letters model a string of letters ("AEKMRS"), otherwise a
    comma-separated list of ids or names ("207,980" / "golden retriever"); an empty spec, or a letters
    spec given to a model of other classes, picks `count` ids spread evenly over the classes. An
    unconditional model gets zeros (ignored by its mapping)."""
    n = G.cfg.num_classes
    if n == 0:
        return torch.zeros(count if count is not None else max(1, len(spec.split(","))), dtype=torch.long)
    names = class_names(G)
    if is_letters_model(G) and spec:
        picked = [LETTER_NAMES.index(ch) for ch in spec.upper() if ch in LETTER_NAMES]
    elif spec and (spec.isalpha() and spec.isupper()):      # a letters spec for a model of other classes
        picked = []
    else:
        picked = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            if part.isdigit():
                if not 0 <= int(part) < n:
                    raise ValueError(f"classes: class id {part} is outside 0..{n - 1}")
                picked.append(int(part))
            elif part in names:
                picked.append(names.index(part))
            else:
                raise ValueError(f"classes: {part!r} is neither a class id (0..{n - 1}) nor a class name of this model")
    if not picked:
        k = count if count is not None else min(n, 6)
        picked = torch.linspace(0, n - 1, k).round().long().tolist() if k > 1 else [0]
    if count is not None:
        picked = picked[:count]
    return torch.tensor(picked, dtype=torch.long)


def model_summary(G) -> dict:
    """What a notebook records as metrics["model"]: dataset, whether it is a letters model, number
    of classes, image channels and training resolution."""
    return {"dataset": getattr(G, "dataset", None), "letters": is_letters_model(G), "num_classes": G.cfg.num_classes,
            "channels": G.cfg.img_channels, "resolution": G.cfg.resolution}

def class_pairs(G, spec: str, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class pairs (a, b) as two LongTensors [K]: for a letters model comma-separated letter pairs
    ("AH,CO"); otherwise comma-separated "a>b" items whose ends are ids or names (see `class_ids`:
    "207>980,golden retriever>tabby"). A letters spec given to another model, or "", picks `count`
    (default min(n, 6)) classes a spread over the classes, each paired with the class half-way round."""
    items = [p.strip() for p in spec.split(",") if p.strip()]
    if is_letters_model(G) and items:
        ids = [class_ids(G, p) for p in items]
        if any(len(i) != 2 for i in ids):
            raise ValueError(f"class_pairs: expected two letters per pair, got {spec!r}")
        return torch.stack([i[0] for i in ids]), torch.stack([i[1] for i in ids])
    if items and all(">" in p for p in items):
        ends = [[class_ids(G, e.strip()) for e in p.split(">")] for p in items]
        if any(len(e) != 2 or len(e[0]) != 1 or len(e[1]) != 1 for e in ends):
            raise ValueError(f"class_pairs: expected items 'a>b' with one class on each side, got {spec!r}")
        return torch.cat([e[0] for e in ends]), torch.cat([e[1] for e in ends])
    a = class_ids(G, "", count)
    return a, (a + max(G.cfg.num_classes, 1) // 2) % max(G.cfg.num_classes, 1)

def class_labels(G, ids, width: int = 16) -> list[str]:
    """Short labels of class ids for figure titles: their `class_names`, cut to `width` characters."""
    names = class_names(G)
    return [names[int(i)][:width] for i in torch.as_tensor(ids).reshape(-1)]

def wide(G) -> bool:
    """Whether one pixel of G costs over 2 MFLOP (`flops_per_pixel`: the ImageNet and FFHQ presets, not the
    letters or other small models); the notebooks' smoke runs shrink their renders for such a model."""
    return flops_per_pixel(G.cfg) > 2e6


def affordable(G, n: int, pixels: int, budget: float = 4e9) -> int:
    """How many latents, at most n and at least 1, can be rendered at `pixels` pixels each within `budget`
    FLOPs (`flops_per_pixel`; 4e9 is about 0.2 s on one CPU thread). The notebooks' smoke runs use it: it
    leaves the letters model's small counts as they are and cuts those of the ImageNet preset (width 1024,
    64x the letters model's cost per pixel) to one latent."""
    return max(1, min(n, int(budget // (flops_per_pixel(G.cfg) * pixels))))


# ----------------------------------------------------------------------------------------------
# Latents, levels, groups and style mixing


def sample_z(G, n: int, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """Latents z [n, z_dim] with per-sample seeds: sample k is drawn from seed * 1_000_000 + offset + k,
    so it is the same image whatever n is (smoke runs show the first samples of a full run)."""
    return torch.stack([torch.randn(G.cfg.z_dim, generator=torch.Generator().manual_seed(seed * 1_000_000 + offset + k))
                        for k in range(n)])


def level_groups(levels: int) -> dict[str, tuple[int, ...]]:
    """Named level groups: {"coarse", "middle", "fine"}. For 10 levels 0-3 / 4-6 / 7-9 (the paper's
    reading: layout / shape / detail); other depths split at round(0.4 L) and round(0.7 L)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels: expected a positive integer, got {levels!r}")
    a, b = round(0.4 * levels), round(0.7 * levels)
    return {"coarse": tuple(range(0, a)), "middle": tuple(range(a, b)), "fine": tuple(range(b, levels))}


def level_mask(levels: int, spec) -> torch.Tensor:
    """Bool mask [L] of the levels named by `spec`: a group name ("coarse", "middle", "fine", "all",
    "none"), a string of indices and inclusive ranges ("0-3,8"), an iterable of level indices, or a
    bool sequence / tensor of length L."""
    groups = level_groups(levels)
    mask = torch.zeros(levels, dtype=torch.bool)
    if isinstance(spec, torch.Tensor) and spec.dtype == torch.bool:
        if spec.shape != (levels,):
            raise ValueError(f"levels: a bool mask must have shape [{levels}], got {list(spec.shape)}")
        return spec.clone().cpu()
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in groups:
            idx = list(groups[s])
        elif s == "all":
            idx = list(range(levels))
        elif s in ("none", ""):
            idx = []
        else:
            idx = []
            try:
                for part in s.split(","):
                    lo, _, hi = part.strip().partition("-")
                    idx += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
            except ValueError:
                raise ValueError(f"levels: expected a group name {sorted(groups) + ['all', 'none']} or indices "
                                 f"like '0-3,8', got {spec!r}") from None
    else:
        try:
            idx = list(spec)
        except TypeError:
            raise ValueError(f"levels: expected a group name, an index string, indices or a bool mask, "
                             f"got {spec!r}") from None
        if idx and all(isinstance(v, bool) for v in idx):
            if len(idx) != levels:
                raise ValueError(f"levels: a bool mask must have {levels} entries, got {len(idx)}")
            return torch.tensor(idx, dtype=torch.bool)
        idx = [int(v) for v in idx]
    bad = [i for i in idx if not 0 <= i < levels]
    if bad:
        raise ValueError(f"levels: indices must be in [0, {levels - 1}], got {bad}")
    mask[idx] = True
    return mask


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, levels) -> torch.Tensor:
    """Style mixing: ws_a [B, L, D] with the levels in `levels` (see `level_mask`) taken from ws_b
    ([B, L, D] or [1, L, D]). levels="none" returns ws_a exactly, "all" returns ws_b."""
    if ws_a.dim() != 3 or ws_b.dim() != 3 or ws_a.shape[1:] != ws_b.shape[1:]:
        raise ValueError(f"ws_b: expected [B, L, D] matching ws_a {list(ws_a.shape)}, got {list(ws_b.shape)}")
    mask = level_mask(ws_a.shape[1], levels).to(ws_a.device)
    return torch.where(mask[None, :, None], ws_b, ws_a)                    # [B, L, D]


def render_ws(G, ws: torch.Tensor, height: int, width: int | None = None, extent: Extent = UNIT,
              chunk_pixels: int | None = None) -> torch.Tensor:
    """`polyinr.render` for ws with any leading dims: [..., L, D] -> [..., C, H, W]."""
    width = width or height
    lead = ws.shape[:-2]
    img = render(G, ws.reshape(-1, *ws.shape[-2:]), height, width, extent=extent, chunk_pixels=chunk_pixels)
    return img.view(*lead, *img.shape[1:])


def style_mixing_grid(G, ws_rows: torch.Tensor, ws_cols: torch.Tensor, levels, height: int,
                      width: int | None = None, extent: Extent = UNIT) -> dict:
    """The StyleGAN mixing figure: entry (i, j) renders row source i with the `levels` of column
    source j. Returns {"rows": [R, C, H, W], "cols": [K, C, H, W], "mixed": [R, K, C, H, W],
    "mask": bool [L]}."""
    R, K = ws_rows.shape[0], ws_cols.shape[0]
    a = ws_rows[:, None].expand(R, K, *ws_rows.shape[1:]).reshape(R * K, *ws_rows.shape[1:])
    b = ws_cols[None].expand(R, K, *ws_cols.shape[1:]).reshape(R * K, *ws_cols.shape[1:])
    mixed = render_ws(G, mix_styles(a, b, levels), height, width, extent)
    return {"rows": render_ws(G, ws_rows, height, width, extent), "cols": render_ws(G, ws_cols, height, width, extent),
            "mixed": mixed.view(R, K, *mixed.shape[1:]), "mask": level_mask(ws_rows.shape[1], levels)}


def mixing_grid_tiles(grid: dict, corner: float = 1.0) -> torch.Tensor:
    """Tiles of a `style_mixing_grid` for `viz.image_grid(tiles, nrow=K + 1)`: a blank corner, the
    column sources along the top, each row source followed by its mixes: [(R + 1) (K + 1), C, H, W]."""
    rows, cols, mixed = grid["rows"], grid["cols"], grid["mixed"]
    top = torch.cat([torch.full_like(cols[:1], corner), cols])             # [K + 1, C, H, W]
    body = torch.cat([rows[:, None], mixed], dim=1)                        # [R, K + 1, C, H, W]
    return torch.cat([top, body.flatten(0, 1)])


@torch.inference_mode()
def classify_mixes(G, classifier: Callable, ws_a: torch.Tensor, ws_b: torch.Tensor, levels, size: int | None = None) -> torch.Tensor:
    """Labels [B] that `classifier` (images -> logits) gives to the mixes `mix_styles(ws_a, ws_b, levels)`
    rendered at `size` (default the training resolution)."""
    size = size or G.cfg.resolution
    return classifier(render(G, mix_styles(ws_a, ws_b, levels), size, size)).argmax(1)


def mixing_votes(pred: torch.Tensor, class_a: torch.Tensor, class_b: torch.Tensor) -> dict:
    """Shares of predicted labels equal to source A's class, source B's class, or neither."""
    a, b = pred == class_a, pred == class_b
    return {"a": a.float().mean().item(), "b": b.float().mean().item(), "other": (~a & ~b).float().mean().item()}


# ----------------------------------------------------------------------------------------------
# Heat-maps and level sensitivity


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise every map [..., H, W] to [0, 1] (min exactly 0, max exactly 1); a constant
    map becomes all zeros."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    out = (maps - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.zeros_like(out))


def _reduce_channels(h: torch.Tensor, reduce: str) -> torch.Tensor:
    if reduce == "mean":
        return h.mean(-1)
    if reduce == "l2":
        return h.norm(dim=-1)
    raise ValueError(f"reduce: expected 'mean' or 'l2', got {reduce!r}")


@torch.inference_mode()
def level_heatmaps(G, ws: torch.Tensor, height: int, width: int | None = None, reduce: str = "mean",
                   extent: Extent = UNIT, normalize: bool = True, chunk_rows: int = 4096) -> dict:
    """Per-level maps of one image each: the post-activation features h_i [P, n] and the affine
    coordinate term A_i X [P, n] (before its LeakyReLU) reduced over channels by `reduce` ("mean":
    channel mean, "l2": channel L2 norm), min-max normalised per image and level when `normalize`.
    Returns {"image": [B, C, H, W], "features": [B, L, H, W], "affine": [B, L, H, W]}."""
    _reduce_channels(torch.zeros(1, 1), reduce)
    width = width or height
    synth = G.synthesis
    A = synth.styles(ws)                                                   # [B, L, 3, n]
    B = ws.shape[0]
    coords = coordinate_grid(height, width, extent, device=ws.device)      # [P, 2]
    step = max(1, chunk_rows // B)
    rgb, feats, affs = [], [], []
    for p0 in range(0, coords.shape[0], step):
        out, lv = synth.evaluate(A, coords[p0:p0 + step], return_levels=True)
        rgb.append(out)                                                    # [B, p, C]
        feats.append(torch.stack([_reduce_channels(h, reduce) for h in lv["features"]], 1))   # [B, L, p]
        affs.append(torch.stack([_reduce_channels(g, reduce) for g in lv["affine"]], 1))
    image = as_image(torch.cat(rgb, 1), height, width)
    maps = {k: torch.cat(v, -1).view(B, -1, height, width) for k, v in (("features", feats), ("affine", affs))}
    if normalize:
        maps = {k: minmax_normalize(v) for k, v in maps.items()}
    return {"image": image, **maps}


def ink(img: torch.Tensor) -> torch.Tensor:
    """Ink density in [0, 1] of black-on-white images in [-1, 1]: (1 - x) / 2, channel mean: [B, H, W]."""
    return ((1 - img.clamp(-1, 1)) / 2).mean(1)


def ink_centroid(img: torch.Tensor) -> torch.Tensor:
    """Centre of ink mass of [B, C, H, W] images in frame units (x, y in [0, 1]): [B, 2]."""
    m = ink(img)                                                           # [B, H, W]
    H, W = m.shape[-2:]
    y = torch.linspace(0, 1, H, dtype=m.dtype, device=m.device)
    x = torch.linspace(0, 1, W, dtype=m.dtype, device=m.device)
    total = m.sum((-2, -1)).clamp_min(1e-8)
    return torch.stack([(m.sum(-2) * x).sum(-1) / total, (m.sum(-1) * y).sum(-1) / total], -1)


def coarse_share(delta: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """Share of the energy of a change [B, C, H, W] that lies in its blocks x blocks block means (an
    orthogonal projection, so the share is in [0, 1]): near 1 for a change of layout (large areas),
    near 0 for a change of fine detail. H and W must be multiples of `blocks`. Returns [B]."""
    H, W = delta.shape[-2:]
    if H % blocks or W % blocks:
        raise ValueError(f"blocks: image size {H}x{W} is not a multiple of {blocks}")
    low = F.avg_pool2d(delta, (H // blocks, W // blocks))
    low_energy = low.square().sum((1, 2, 3)) * (H // blocks) * (W // blocks)
    return low_energy / delta.square().sum((1, 2, 3)).clamp_min(1e-20)


def map_correlation(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over pixels between every map [B, L, H, W] and a reference map [B, H, W]
    (e.g. the final image's `ink`): [B, L]; 0 where a map is constant."""
    m = maps.flatten(2) - maps.flatten(2).mean(-1, keepdim=True)           # [B, L, P]
    r = reference.flatten(1) - reference.flatten(1).mean(-1, keepdim=True)  # [B, P]
    num = (m * r[:, None]).sum(-1)
    den = m.norm(dim=-1) * r.norm(dim=-1)[:, None]
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))


@torch.inference_mode()
def level_sensitivity(G, ws: torch.Tensor, ws_alt: torch.Tensor, height: int, levels=None,
                      classifier: Callable | None = None, blocks: int = 4) -> dict:
    """How much the image changes when some levels' w is replaced by another latent's (ws_alt, e.g.
    resampled with the same class, or taken from another class), one condition per entry of
    `levels` (default: every single level; or a dict name -> level spec, e.g. `level_groups`).
    Per condition (tensors [K], means over the B samples):
    - "pixel_change": mean |x_mixed - x| in image units (images in [-1, 1], so at most 2);
    - "coarse_share": share of the change's energy in its blocks x blocks block means (layout);
    - "dc_share": share of the change's energy in its image mean (a global tone change);
    - "centroid_shift": distance moved by the ink centroid, in image sides;
    - "ink_change": mean relative change of the total ink;
    - with `classifier` (images -> logits, at its resolution): "label_changed" (label differs from
      the original's) and "label_alt" (label equals that of the ws_alt render).
    Also "names" (the K condition names) and "base_change": the same numbers for all levels."""
    L = ws.shape[1]
    conds = {str(i): [i] for i in range(L)} if levels is None else dict(levels)
    conds_all = {**conds, "all": "all"}
    x = render(G, ws, height, height)
    x_alt = render(G, ws_alt, height, height)
    ink0, c0 = ink(x).sum((1, 2)), ink_centroid(x)
    if classifier is not None:
        y0, y_alt = classifier(x).argmax(1), classifier(x_alt).argmax(1)
    keys = ["pixel_change", "coarse_share", "dc_share", "centroid_shift", "ink_change"] + (
        ["label_changed", "label_alt"] if classifier is not None else [])
    out = {k: [] for k in keys}
    for name, spec in conds_all.items():
        xm = render(G, mix_styles(ws, ws_alt, spec), height, height)
        d = xm - x
        out["pixel_change"].append(d.abs().mean().item())
        out["coarse_share"].append(coarse_share(d, blocks).mean().item())
        out["dc_share"].append(coarse_share(d, 1).mean().item())
        out["centroid_shift"].append((ink_centroid(xm) - c0).norm(dim=-1).mean().item())
        out["ink_change"].append(((ink(xm).sum((1, 2)) - ink0).abs() / ink0.clamp_min(1e-8)).mean().item())
        if classifier is not None:
            y = classifier(xm).argmax(1)
            out["label_changed"].append((y != y0).float().mean().item())
            out["label_alt"].append((y == y_alt).float().mean().item())
    res = {k: torch.tensor(v[:-1]) for k, v in out.items()}
    res["names"] = list(conds)
    res["base_change"] = {k: v[-1] for k, v in out.items()}
    return res


def group_means(per_level: dict, groups: dict) -> dict:
    """Per-group means of per-level numbers: per_level {metric: [L] (tensor or list)} and groups {name:
    level indices} (e.g. `level_groups`) -> {name: {metric: mean over the group's levels}}."""
    return {name: {k: torch.as_tensor(v, dtype=torch.float64)[list(lv)].mean().item() for k, v in per_level.items()}
            for name, lv in groups.items()}


LEVEL_ROLES = {
    "identity": "decide which letter it is",
    "breaks": "break the letter without passing on the other one",
    "tone": "change the image smoothly (tone, contrast, stroke weight), not the letter",
    "shape": "adjust the strokes within the class, not the letter",
}


def read_level_groups(swap_other: dict, identity: float = 0.5, breaks: float = 0.25, tone: float = 0.1) -> dict:
    """A reading of what each level group does, from `level_sensitivity` numbers of swapping the
    group's w for that of a sample of another class (swap_other {group: {"label_alt", "label_changed",
    "dc_share", ...}}). First rule that holds, per group (keys of `LEVEL_ROLES`):
    "identity" if the classifier gives the other sample's class to >= `identity` of the mixes;
    "breaks" if the label changes (to anything) in >= `breaks` of them; "tone" if >= `tone` of the
    change's energy is in the image mean (a global, smooth change); otherwise "shape". Returns {group: role}."""
    roles = {}
    for name, s in swap_other.items():
        if s["label_alt"] >= identity:
            roles[name] = "identity"
        elif s["label_changed"] >= breaks:
            roles[name] = "breaks"
        elif s["dc_share"] >= tone:
            roles[name] = "tone"
        else:
            roles[name] = "shape"
    return roles


# ----------------------------------------------------------------------------------------------
# Extrapolation and zoom-out


def margin_pixels(size: int, fraction: float) -> int:
    """Whole pixels of a size-pixel grid (spacing 1 / (size - 1)) that cover `fraction` of the frame
    beyond each side: ceil(fraction (size - 1)); e.g. 16 px and 0.25 -> 4 (extent +-0.267)."""
    return math.ceil(fraction * (size - 1) - 1e-9)


def frame_extent(size: int, margin: int) -> Extent:
    """The extent covered by a size-pixel grid extended by `margin` pixels on every side."""
    lo, hi = -margin / (size - 1), (size - 1 + margin) / (size - 1)
    return (lo, hi), (lo, hi)


def extrapolate(G, ws: torch.Tensor, size: int, margin: int, chunk_pixels: int | None = None) -> dict:
    """Render the size x size grid on [0, 1]^2 extended by `margin` whole pixels on every side, with
    the same spacing 1 / (size - 1) (`polyinr.pixel_grid`), so in-frame pixels get bit-identical
    coordinates to `render(G, ws, size, size)`. Returns {"image": [B, C, S, S] with S = size +
    2 margin, "frame": (margin, margin + size), the row and column slice of the original frame,
    "extent": the covered extent}."""
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"margin: expected an integer >= 0 (pixels), got {margin!r}")
    S = size + 2 * margin
    coords = pixel_grid(size, size, rows=(-margin, size + margin), cols=(-margin, size + margin), device=ws.device)
    rgb = render_coords(G, ws, coords, chunk_pixels=chunk_pixels)          # [B, P, C]
    image = as_image(rgb, S, S)
    return {"image": image, "frame": (margin, margin + size), "extent": frame_extent(size, margin)}


def boundary_steps(result: dict) -> dict:
    """Continuity of an `extrapolate` result across the frame: mean |step| between the frame's
    border pixels and their neighbours just outside ("across"), and between the border pixels and
    their neighbours just inside ("inside"); a ratio near 1 means the image continues past the frame
    as smoothly as it varies within it. Needs margin >= 1 and a frame of at least 2 pixels."""
    a, b = result["frame"]
    x = result["image"]
    if a < 1 or b - a < 2:
        raise ValueError(f"result: needs a margin >= 1 and a frame >= 2 pixels, got frame {result['frame']}")
    f = x[..., a:b, a:b]
    across = torch.cat([(f[..., 0, :] - x[..., a - 1, a:b]).flatten(), (f[..., -1, :] - x[..., b, a:b]).flatten(),
                        (f[..., :, 0] - x[..., a:b, a - 1]).flatten(), (f[..., :, -1] - x[..., a:b, b]).flatten()])
    inside = torch.cat([(f[..., 0, :] - f[..., 1, :]).flatten(), (f[..., -1, :] - f[..., -2, :]).flatten(),
                        (f[..., :, 0] - f[..., :, 1]).flatten(), (f[..., :, -1] - f[..., :, -2]).flatten()])
    return {"across": across.abs().mean().item(), "inside": inside.abs().mean().item()}


def frame_crop(result: dict) -> torch.Tensor:
    """The original frame of an `extrapolate` result: [B, C, size, size]."""
    a, b = result["frame"]
    return result["image"][..., a:b, a:b]


def zoom_out(G, ws: torch.Tensor, size: int, margins: Iterable[int]) -> list[dict]:
    """`extrapolate` at every margin (pixels at the training spacing): a zoom-out series whose images
    grow with the margin and share the pixel grid."""
    return [extrapolate(G, ws, size, m) for m in margins]


def render_series(G, ws: torch.Tensor, extents: Iterable[Extent], height: int, width: int | None = None) -> torch.Tensor:
    """The same latents on several extents at a fixed output size: [K, B, C, H, W]."""
    return torch.stack([render(G, ws, height, width or height, extent=e) for e in extents])


# ----------------------------------------------------------------------------------------------
# Higher resolution


def render_upsampled(G, ws: torch.Tensor, base: int, factor: int) -> torch.Tensor:
    """Render ws at factor x the base resolution on `pixel_center_extent(base, factor)`: [B, C, kR, kR]."""
    n = base * factor
    return render(G, ws, n, n, extent=pixel_center_extent(base, factor))


def downsample_area(img: torch.Tensor, factor: int) -> torch.Tensor:
    """k x k box average (how the letters data is made from its supersampled canvas)."""
    return F.avg_pool2d(img, factor)


def grey_fraction(img: torch.Tensor, lo: float = 0.1, hi: float = 0.9) -> torch.Tensor:
    """Share of pixels whose ink density is strictly between lo and hi (edge pixels), per image [B];
    sharp edges make it fall like 1 / resolution, blurred ones keep it constant."""
    m = ink(img)
    return ((m > lo) & (m < hi)).float().mean((1, 2))


# ----------------------------------------------------------------------------------------------
# Interpolation and smoothness


def _weights(t, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1) if t.dim() else t.reshape(1)


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Linear interpolation a + t (b - a) at every t (scalar or [T]): [T, *a.shape]. Exact endpoints:
    t = 0 gives a and t = 1 gives b bit for bit (torch.lerp)."""
    t = _weights(t, a)
    return torch.lerp(a[None], b[None], t.view(-1, *[1] * a.dim()))


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float) -> torch.Tensor:
    """slerp with t broadcastable against a[..., :1]."""
    cos = F.cosine_similarity(a, b, dim=-1, eps=1e-12).clamp(-1, 1)[..., None]   # [..., 1]
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    ok = sin > eps
    safe = torch.where(ok, sin, torch.ones_like(sin))
    sph = torch.sin((1 - t) * theta) / safe * a + torch.sin(t * theta) / safe * b
    return torch.where(ok, sph, torch.lerp(a, b, t))


def slerp(a: torch.Tensor, b: torch.Tensor, t, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dim at every t (scalar or [T]): [T, *a.shape].
    sin((1 - t) theta) / sin(theta) a + sin(t theta) / sin(theta) b with theta the angle between a
    and b: for unit vectors the path stays on the sphere at constant angular speed; t = 0 and 1 give
    a and b exactly; (anti-)parallel pairs (sin theta < eps) fall back to `lerp`."""
    t = _weights(t, a).view(-1, *[1] * a.dim())                            # [T, 1, ..., 1]
    return _slerp(a[None], b[None], t, eps)


def interpolate_w(ws_a: torch.Tensor, ws_b: torch.Tensor, steps: int) -> torch.Tensor:
    """Linear interpolation in W between ws_a and ws_b [B, L, D] at `steps` equally spaced t in [0, 1]:
    [B, T, L, D]; the first and last entries equal the sources exactly."""
    return lerp(ws_a, ws_b, torch.linspace(0, 1, steps)).transpose(0, 1)


def interpolate_z(G, z_a: torch.Tensor, z_b: torch.Tensor, c, steps: int, psi: float = 1.0) -> torch.Tensor:
    """Spherical interpolation in Z between z_a and z_b [B, z_dim] (the mapping normalises z, so only
    its direction matters) with class ids c [B], mapped to W: [B, T, L, D]."""
    B = z_a.shape[0]
    z = slerp(z_a, z_b, torch.linspace(0, 1, steps)).transpose(0, 1)      # [B, T, z_dim]
    cc = None if c is None else torch.as_tensor(c).reshape(B, 1).expand(B, steps).reshape(-1)
    ws = G.mapping(z.reshape(B * steps, -1), cc, psi=psi)
    return ws.view(B, steps, *ws.shape[1:])


def interpolate_classes(G, z: torch.Tensor, c_a, c_b, steps: int, psi: float = 1.0) -> torch.Tensor:
    """Class-to-class interpolation: the same z [B, z_dim] mapped with class c_a and with c_b, linearly
    interpolated in W: [B, T, L, D] (endpoints equal G.mapping(z, c_a) and G.mapping(z, c_b))."""
    return interpolate_w(G.mapping(z, c_a, psi=psi), G.mapping(z, c_b, psi=psi), steps)


def step_changes(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel change between consecutive frames [..., T, C, H, W]: [..., T - 1]."""
    return (frames[..., 1:, :, :, :] - frames[..., :-1, :, :, :]).abs().mean((-3, -2, -1))


def smoothness(frames: torch.Tensor) -> dict:
    """Smoothness of interpolation sequences [B, T, C, H, W] from their step-to-step changes d [B, T-1]:
    "step_mean" (mean of d), "step_var" (variance of d over the steps, mean over sequences), "step_cv"
    (std / mean per sequence, averaged: 0 for a path of constant speed) and "max_over_mean" (largest
    step over the mean step, averaged: 1 for constant speed, large when the change happens in a jump)."""
    d = step_changes(frames)                                               # [B, T - 1]
    mean = d.mean(-1)
    var = d.var(-1, unbiased=False)
    return {"step_mean": mean.mean().item(), "step_var": var.mean().item(),
            "step_cv": (var.sqrt() / mean.clamp_min(1e-12)).mean().item(),
            "max_over_mean": (d.amax(-1) / mean.clamp_min(1e-12)).mean().item()}


def _as_dtype(module, dtype):
    """module itself when its parameters already have `dtype` (or it has none), else a converted copy."""
    p = next(iter(module.parameters()), None) if isinstance(module, torch.nn.Module) else None
    return module if p is None or p.dtype == dtype else copy.deepcopy(module).to(dtype)


def downsampled_pixels(img: torch.Tensor, size: int = 16) -> torch.Tensor:
    """A feature space that needs no trained network: the image [B, C, H, W] area-averaged to
    size x size, flattened: [B, C * size * size] (e.g. the `extractor` of `perceptual_path_length`
    for models without a classifier of their own)."""
    return F.adaptive_avg_pool2d(img, size).flatten(1)


@torch.no_grad()
def perceptual_path_length(G, extractor, z_a: torch.Tensor, z_b: torch.Tensor, c, space: str = "w",
                           t: torch.Tensor | None = None, eps: float = 1e-4, size: int | None = None,
                           psi: float = 1.0, dtype: torch.dtype = torch.float64, batch: int = 256) -> dict:
    """Perceptual path length (StyleGAN, Karras et al. 2019): for pairs (z_a, z_b) [N, z_dim] of class
    c [N] and positions t [N] (default uniform in [0, 1 - eps], seeded by the caller's RNG), the
    distance between the images at t and t + eps along the path, divided by eps^2. Paths: "w" =
    linear between the mapped w's, "z" = spherical between the z's. Distance: squared Euclidean
    distance of the unit-normalised features of `extractor` (its `.features` when it has one, e.g. the
    letters classifier's 64-d penultimate features) at resolution `size` (default the training one).
    Computed in `dtype` (float64 by default, so eps = 1e-4 is far above rounding). Returns {"ppl":
    mean of the distances between their 1st and 99th percentiles (StyleGAN's filter), "distances": [N]}."""
    if space not in ("w", "z"):
        raise ValueError(f"space: expected 'w' or 'z', got {space!r}")
    N = z_a.shape[0]
    t = torch.rand(N) * (1 - eps) if t is None else t
    Gd, Ed = _as_dtype(G, dtype), _as_dtype(extractor, dtype)
    feat = Ed.features if hasattr(Ed, "features") else Ed
    size = size or G.cfg.resolution
    cc = None if c is None else check_classes(torch.as_tensor(c).reshape(-1).expand(N), G.cfg.num_classes, N, z_a.device)
    mapping = lambda z, c: Gd.mapping.unchecked(z, c, psi)[:, 0]   # noqa: E731  (in dtype; the public call is fp32)
    dists = []
    for i in range(0, N, batch):
        sl = slice(i, i + batch)
        za, zb, ti = z_a[sl].to(dtype), z_b[sl].to(dtype), t[sl].to(dtype)
        ci = None if cc is None else cc[sl].repeat(2)
        n = za.shape[0]
        tt = torch.cat([ti, ti + eps])[:, None]                            # [2n, 1]
        za, zb = za.repeat(2, 1), zb.repeat(2, 1)                          # [2n, z_dim]
        if space == "w":
            w = torch.lerp(mapping(za, ci), mapping(zb, ci), tt)          # [2n, D]
        else:
            w = mapping(_slerp(za, zb, tt, 1e-7), ci)
        ws = w[:, None].expand(-1, G.cfg.levels, -1)
        img = synthesize(Gd, ws, size, size)
        f = F.normalize(feat(img), dim=-1)
        dists.append((f[:n] - f[n:]).square().sum(-1) / eps ** 2)
    d = torch.cat(dists).float()
    lo, hi = torch.quantile(d, 0.01), torch.quantile(d, 0.99)
    keep = d[(d >= lo) & (d <= hi)]
    return {"ppl": keep.mean().item(), "distances": d}


# ----------------------------------------------------------------------------------------------
# Figures (matplotlib; images in [-1, 1], maps in [0, 1])


def image_table(rows, row_titles=None, col_titles=None, cell: float = 1.1, cmap: str = "gray", vmin=None, vmax=None,
                frames=None):
    """A figure of images [C, H, W] in a table: `rows` is a list of rows (lists of images, any sizes)
    or a tensor [R, K, C, H, W]. Images are shown as [-1, 1] unless vmin / vmax are given (maps:
    vmin=0, vmax=1, cmap="inferno"). `frames`: optional table of (a, b) pixel slices, drawn as a red
    square (the original frame of an extrapolation). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    R, K = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(R, K, figsize=(cell * K, cell * R + 0.2), squeeze=False)
    for i in range(R):
        for j in range(K):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            if j >= len(rows[i]):
                ax.axis("off")
                continue
            img = rows[i][j].detach().float().cpu()
            if vmin is None and vmax is None:
                img = to_unit(img)
                lo, hi = 0.0, 1.0
            else:
                lo, hi = vmin, vmax
            arr = img.permute(1, 2, 0).numpy() if img.dim() == 3 else img.numpy()
            arr = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
            ax.imshow(arr, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if frames is not None and frames[i][j] is not None:
                a, b = frames[i][j]
                ax.add_patch(Rectangle((a - 0.5, a - 0.5), b - a, b - a, fill=False, edgecolor="red", linewidth=1))
            if i == 0 and col_titles is not None:
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i], fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.01, top=0.99 - (0.3 / fig.get_figheight() if col_titles else 0),
                        wspace=0.05, hspace=0.05)
    return fig


def heatmap_table(image: torch.Tensor, maps: torch.Tensor, row_titles=None, title: str | None = None,
                  cell: float = 0.9, cmap: str = "inferno", pad: int = 2):
    """Rows of [image, level 0 map, ..., level L-1 map] from `level_heatmaps` outputs image
    [B, C, H, W] (C = 1 grey or 3 RGB) and maps [B, L, H, W] (in [0, 1]), drawn as one mosaic. Returns
    the figure."""
    import matplotlib.pyplot as plt
    B, L, H, W = maps.shape
    colors = plt.get_cmap(cmap)(maps.clamp(0, 1).numpy())[..., :3]             # [B, L, H, W, 3]
    img = to_unit(image).expand(B, 3, H, W).permute(0, 2, 3, 1).numpy()       # grey [B, 1, H, W] or RGB -> [B, H, W, 3]
    mosaic = torch.ones(B * (H + pad) - pad, (L + 1) * (W + pad) - pad, 3).numpy()
    for i in range(B):
        r = i * (H + pad)
        mosaic[r:r + H, :W] = img[i]
        for j in range(L):
            c = (j + 1) * (W + pad)
            mosaic[r:r + H, c:c + W] = colors[i, j]
    fig = plt.figure(figsize=(cell * (L + 1), cell * B + (0.5 if title else 0.3)))
    ax = fig.add_axes([0.06, 0.0, 0.94, 1 - (0.5 if title else 0.3) / fig.get_figheight()])
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([(W + pad) * j + W / 2 for j in range(L + 1)], ["image"] + [f"level {j}" for j in range(L)], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([(H + pad) * i + H / 2 for i in range(B)], row_titles if row_titles is not None else [""] * B, fontsize=8)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10, y=1.0)
    return fig


__all__ = [
    "sample_z", "level_groups", "level_mask", "mix_styles", "render_ws", "style_mixing_grid", "mixing_grid_tiles", "classify_mixes",
    "mixing_votes",
    "minmax_normalize", "level_heatmaps", "ink", "ink_centroid", "coarse_share", "map_correlation",
    "level_sensitivity", "group_means", "LEVEL_ROLES", "read_level_groups",
    "margin_pixels", "frame_extent", "extrapolate", "boundary_steps", "frame_crop", "zoom_out", "render_series",
    "render_upsampled", "downsample_area", "grey_fraction",
    "lerp", "slerp", "interpolate_w", "interpolate_z", "interpolate_classes", "step_changes", "smoothness",
    "perceptual_path_length", "downsampled_pixels", "image_table", "heatmap_table",
    "LETTER_NAMES", "is_letters_model", "letters_only", "class_names", "class_ids", "model_summary", "class_pairs",
    "class_labels", "wide", "affordable",
]
