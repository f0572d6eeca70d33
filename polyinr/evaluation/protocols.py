"""Evaluating a generator: fixed-seed sampling, offline letters metrics with real-vs-real floors, the
higher-resolution protocol (paper Table 3), Inception metrics through torch-fidelity, protocol
records, a benchmark and the command line (`python -m polyinr.metrics`).

Sampling: sample k (0 <= k < N) draws, from numpy.random.default_rng([seed, k]), first its class by
the inverse CDF of the reference set's label distribution, then z ~ N(0, I); so sample k is the same
image in every run, whatever N and the batch size. Images are quantised to uint8 the StyleGAN way,
(x * 127.5 + 128).clamp(0, 255), before any feature extractor sees them, like the real data.

Letters metrics live in the feature space of the letters classifier (`LettersCNN.features`, 64-d),
one classifier per resolution trained on true glyphs at that resolution, and are named `*_letters`
so nobody takes them for Inception FID. Each comes with its real-vs-real floor: the same metric for N
fresh real images (the 20 training faces with new jitter, `floor_seed`) against the same reference
(the training split), so both share the sample sizes and thus the finite-sample bias.

Higher resolution (Table 3): a model trained at R renders at kR on the denser grid, and the baseline
upsamples the native R render with bicubic interpolation; both are scored against true letters
rendered at kR from the fonts. `alignment="centers"` (default) places the dense grid on the pixel
centres of the kR image, the geometry of the data (a 16 px pixel c is the canvas box around
(c + 0.5) / 16, which the model learned at x = c / 15), and pairs it with bicubic
align_corners=False; "corners" is the paper's CoordinateGrid on [0, 1] with align_corners=True, which
magnifies by R / (R - 1) relative to the data.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import load_checkpoint, load_generator
from ..core.config import TrainConfig
from ..core.files import __version__, cache_dir, resolve, sha256_file, write_json
from ..core.grid import UNIT, check_size, pixel_center_extent
from ..core.images import to_uint8, upsample
from ..core.model import check_psi
from ..core.progress import progress_bar
from ..core.render import render
from ..training.classifiers import letters_classifier
from ..training.data import load_dataset
from . import fid as _fid
from .letters import FLOOR_SEED, letters_features, letters_predict, real_letters, reference_features, stem_for

KS = (2, 4, 8)
DEFAULT_CHECKPOINT = "experiments/results/02_train/generator.pt"
INCEPTION_METRICS = ("fid", "kid", "is", "pr", "sfid")
ALL_METRICS = ("letters", "hires", "fid_random", "halves") + INCEPTION_METRICS
BICUBIC = "torch.nn.functional.interpolate(mode='bicubic', a=-0.75), clamped by uint8 quantisation"


# ------------------------------------------------------------------------------------------ sampling


def sample_codes(num: int, seed: int, z_dim: int, class_probs=None, start: int = 0):
    """Latents of samples start .. start + num - 1: z [num, z_dim] float32 and classes [num] int64
    (None without class_probs). Sample k uses numpy.random.default_rng([seed, k]) only."""
    cdf = None if class_probs is None else np.cumsum(np.asarray(class_probs, np.float64) / np.sum(class_probs))
    z = np.empty((num, z_dim), np.float32)
    c = np.empty(num, np.int64)
    for i in range(num):
        rng = np.random.default_rng([seed, start + i])
        if cdf is not None:
            c[i] = min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)
        z[i] = rng.standard_normal(z_dim)
    return torch.from_numpy(z), (None if cdf is None else torch.from_numpy(c))


def _dense_extent(R: int, k: float, alignment: str = "centers"):
    """Extent of a k-times denser render of a model trained at R: "centers" puts the dense pixels on
    the pixel centres of the kR image (`pixel_center_extent`); "corners" is the paper's CoordinateGrid
    on [0, 1]."""
    if alignment not in ("centers", "corners"):
        raise ValueError(f"alignment: expected 'centers' or 'corners', got {alignment!r}")
    return UNIT if alignment == "corners" else pixel_center_extent(R, k)


def sample_batches(G, num: int, seed: int = 0, psi: float = 1.0, class_probs=None, batch: int = 256,
                   device="cpu", progress: bool = False, desc: str = "samples"):
    """Yield (start, c [B] or None, ws [B, L, w_dim]) for samples 0 .. num - 1."""
    if G.cfg.conditional and class_probs is None:
        class_probs = np.ones(G.cfg.num_classes)
    probs = class_probs if G.cfg.conditional else None
    with progress_bar(total=num, desc=desc, disable=not progress, leave=False) as bar:
        for s in range(0, num, batch):
            z, c = sample_codes(min(batch, num - s), seed, G.cfg.z_dim, probs, start=s)
            with torch.inference_mode():
                ws = G.mapping(z.to(device), None if c is None else c.to(device), psi=psi)
            yield s, c, ws
            bar.update(len(z))


# -------------------------------------------------------------------------------------------- reals


# ---------------------------------------------------------------------------------- letters features


def scores(gen, ref, k: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
    """fd, kid, kid_std, precision, recall of features gen [N, d] against ref [M, d]."""
    out = {"fd": _fid.fd_features(gen, ref)}
    kd = _fid.kid(gen, ref, subsets=kid_subsets, subset_size=kid_subset_size)
    out.update(kid=kd["kid"], kid_std=kd["kid_std"])
    out.update(_fid.precision_recall(gen, ref, k=k))
    return out


def _named(s: dict, tag: str) -> dict:
    """{"fd": v} -> {"fd_letters<tag>": v}, kid_std -> kid_letters_std<tag>."""
    out = {}
    for key, v in s.items():
        base, std = (key[:-4], "_std") if key.endswith("_std") else (key, "")
        out[f"{base}_letters{std}{tag}"] = v
    return out


# ------------------------------------------------------------------------------------------ records


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("torch-fidelity")          # without importing it (torchvision: seconds)
    except PackageNotFoundError:
        tf_version = None
    return {"polyinr": __version__, "torch": torch.__version__, "torch_fidelity": tf_version, "numpy": np.__version__}


def load_network(network, device="cpu"):
    """A checkpoint path or a Generator -> (G on device, {"checkpoint", "checkpoint_sha256", ...})."""
    if isinstance(network, torch.nn.Module):
        return network.to(device).eval(), {"checkpoint": None, "checkpoint_sha256": None,
                                           "generator_state_sha256": _fid.module_sha256(network)}
    path = resolve(network)
    ck = load_checkpoint(path)
    info = {"checkpoint": str(network), "checkpoint_sha256": sha256_file(path), "preset": ck.get("preset"),
            "train_config": ck.get("train_config")}
    return load_generator(path).to(device), info


def _protocol(G, net_info: dict, num: int, seed: int, psi: float, **extra) -> dict:
    return {"num": num, "seed": seed, "psi": psi,
            "sample_seeds": f"sample k in [0, {num}): numpy.random.default_rng([{seed}, k]) draws its class "
                            f"(inverse CDF of the reference label distribution), then z ~ N(0, I)",
            "quantisation": "uint8 = (x * 127.5 + 128).clamp(0, 255) (StyleGAN), reals are uint8",
            "train_resolution": G.cfg.resolution, **net_info, "packages": versions(), **extra}


# ------------------------------------------------------------------------------------ letters metrics


def evaluate_letters(network, num: int = 10000, seed: int = 0, psi: float = 1.0, ks=KS, hires_num: int = 1000,
                     classifiers: dict | None = None, classifier_epochs: int = 4, reference_n: int | None = None,
                     floor_seed: int = FLOOR_SEED, floors: bool = True, alignment: str = "centers",
                     batch: int = 256, device="cpu", progress: bool = True, keep: int = 8) -> dict:
    """Letters metrics of a generator at its training resolution R (num samples) and, for k in ks,
    the higher-resolution table (the first hires_num samples rendered on the denser grid and
    bicubic-upsampled), each with its real-vs-real floor. `classifiers` maps resolution -> LettersCNN
    (default: `letters_classifier(resolution, epochs=classifier_epochs)` for R and every kR).
    Returns {"metrics": flat dict, "protocol", "examples", "seconds"}."""
    G, net_info = load_network(network, device)
    R = G.cfg.resolution
    ks = tuple(int(k) for k in ks)
    res = [R] + [k * R for k in ks]
    n_hi = min(hires_num, num) if ks else 0
    t = {"setup": time.perf_counter()}
    clfs, clf_info = _letters_classifiers(classifiers, ks, res, classifier_epochs, device)
    refs = {r: reference_features(clfs[r], r, n=reference_n) for r in res}
    class_probs = np.bincount(refs[R]["labels"].numpy(), minlength=G.cfg.num_classes or 1)
    t["setup"] = time.perf_counter() - t["setup"]

    t["generate"] = time.perf_counter()
    feats, examples = _generated_features(G, clfs, num, n_hi, ks, seed, psi, class_probs, batch, device, progress,
                                          keep, alignment)
    t["generate"] = time.perf_counter() - t["generate"]

    t["scores"] = time.perf_counter()
    M = _generated_scores(G, clfs, refs, feats, ks, n_hi)
    t["scores"] = time.perf_counter() - t["scores"]

    t["floors"] = time.perf_counter()
    floor_info = {}
    if floors:
        M.update(_real_floors(clfs, refs, R, ks, num, n_hi, floor_seed))
        floor_info = {"dataset": "letters", "split": "train", "seed": floor_seed, "num": num, "num_hires": n_hi,
                      "description": "fresh real draws (training faces, jitter seed "
                                     f"{floor_seed}) of the same size as the generated set, scored against "
                                     "the same reference; class_consistency floor = classifier accuracy on them",
                      "heldout_fonts": "fd_letters_heldout_fonts: the 780-image test split (3 held-out faces) "
                                       "vs the reference"}
    t["floors"] = time.perf_counter() - t["floors"]

    protocol = _protocol(
        G, net_info, num, seed, psi, num_hires=n_hi, ks=list(ks),
        reference={"dataset": "letters", "split": "train", "seed": 0, "n": len(refs[R]["features"]),
                   "description": "the training split (20 faces x 26 letters x 10 jittered variants) rendered "
                                  "from the fonts at each resolution"},
        floor=floor_info,
        extractor="letters-cnn: LettersCNN.features (64-d), one classifier per resolution trained on true glyphs "
                  "at that resolution; at kR with log2(k) learned stride-2 stem blocks before the same body",
        extractor_sha256={str(r): refs[r]["extractor_sha256"] for r in res},
        classifiers={str(r): v for r, v in clf_info.items()},
        resize_filter=f"none at 1x; higher resolution: denser grid vs bicubic ({BICUBIC}), "
                      f"align_corners={alignment == 'corners'}",
        render={"dtype": "float32", "alignment": alignment,
                "extents": {str(k): _dense_extent(R, k, alignment) for k in ks}},
        kid={"subsets": 100, "subset_size": "min(1000, sizes)", "kernel": "(x.y / d + 1)^3", "estimator": "unbiased"},
        precision_recall={"k": 3})
    return {"metrics": M, "protocol": protocol, "examples": examples, "seconds": t}


def _letters_classifiers(classifiers, ks, res, epochs: int, device):
    """{resolution: classifier} on `device` (the cached letters classifiers unless given) and their info."""
    info = {}
    if classifiers is None:
        classifiers = {}
        for k, r in zip((1,) + ks, res):
            classifiers[r], full = letters_classifier(r, epochs=epochs, stem=stem_for(k), return_info=True)
            info[r] = {key: full.get(key) for key in ("epochs", "stem", "train_seconds", "heldout_accuracy",
                                                       "train_accuracy")}
    return {r: classifiers[r].to(device) for r in res}, info


def _generated_features(G, clfs, num, n_hi, ks, seed, psi, class_probs, batch, device, progress, keep, alignment):
    """Letters features of the num samples at R and of the first n_hi on the k-times denser grid and
    bicubic-upsampled: ({"native" [N, 64], "labels" [N], "grid": {k: [n_hi, 64]}, "bicubic": {k: ...}},
    the first `keep` images of each kind for figures)."""
    R = G.cfg.resolution
    f1, labels, grid, bic = [], [], {k: [] for k in ks}, {k: [] for k in ks}
    ex = {"native": [], "grid": {k: [] for k in ks}, "bicubic": {k: [] for k in ks}, "labels": []}
    for s, c, ws in sample_batches(G, num, seed, psi, class_probs, batch, device, progress, "letters samples"):
        img = render(G, ws, R, R)                                                     # [B, 1, R, R]
        f1.append(letters_features(clfs[R], to_uint8(img)))
        labels.append(c if c is not None else torch.zeros(len(ws), dtype=torch.long))
        m, e = max(0, min(len(ws), n_hi - s)), max(0, min(len(ws), keep - s))
        if e:
            ex["native"].append(img[:e].cpu())
            ex["labels"].append(labels[-1][:e])
        for k in ks if m else ():
            b = upsample(img[:m], k, clamp=None, align_corners=alignment == "corners")
            g = (render(G, ws[:m], k * R, k * R, extent=_dense_extent(R, k, alignment)) if G.synthesis.any_grid
                 else b.clamp(-1, 1))                 # a generator bound to its grid: its "grid" column is bicubic
            grid[k].append(letters_features(clfs[k * R], to_uint8(g)))
            bic[k].append(letters_features(clfs[k * R], to_uint8(b)))
            if e:
                ex["grid"][k].append(g[:e].cpu())
                ex["bicubic"][k].append(b[:e].clamp(-1, 1).cpu())
    feats = {"native": torch.cat(f1), "labels": torch.cat(labels),
             "grid": {k: torch.cat(v) for k, v in grid.items()}, "bicubic": {k: torch.cat(v) for k, v in bic.items()}}
    examples = {"labels": torch.cat(ex["labels"]) if ex["labels"] else None,
                "native": torch.cat(ex["native"]) if ex["native"] else None,
                "grid": {k: torch.cat(v) for k, v in ex["grid"].items() if v},
                "bicubic": {k: torch.cat(v) for k, v in ex["bicubic"].items() if v}}
    return feats, examples


def _generated_scores(G, clfs, refs, feats, ks, n_hi) -> dict:
    """FD / KID / precision / recall (and class consistency for a conditional G) of the generated
    features at R and of every column of the higher-resolution table."""
    R, f1, labels = G.cfg.resolution, feats["native"], feats["labels"]
    M = _named(scores(f1, refs[R]["features"]), "")
    if G.cfg.conditional:
        M["class_consistency_letters"] = (letters_predict(clfs[R], f1) == labels).double().mean().item()
    for k in ks:
        for name in ("grid", "bicubic"):
            M.update(_named(scores(feats[name][k], refs[k * R]["features"]), f"_{name}_x{k}"))
        if G.cfg.conditional:
            for name in ("grid", "bicubic"):
                M[f"class_consistency_letters_{name}_x{k}"] = \
                    (letters_predict(clfs[k * R], feats[name][k]) == labels[:n_hi]).double().mean().item()
    if ks:                                                       # the k = 1 column of the table
        M.update(_named(scores(f1[:n_hi], refs[R]["features"]), "_grid_x1"))
        if G.cfg.conditional:
            M["class_consistency_letters_grid_x1"] = \
                (letters_predict(clfs[R], f1[:n_hi]) == labels[:n_hi]).double().mean().item()
    return M


def _real_floors(clfs, refs, R, ks, num, n_hi, floor_seed) -> dict:
    """The same scores for fresh real letters of the same sizes (the real-vs-real floors), and the
    held-out fonts' letters-FD."""
    M = {}
    for r, n, tag in [(R, num, "")] + [(k * R, n_hi, f"_x{k}") for k in ks] + ([(R, n_hi, "_x1")] if ks else []):
        imgs, lab = real_letters(r, n, "train", floor_seed)
        fr = letters_features(clfs[r], imgs)
        s = scores(fr, refs[r]["features"])
        s["class_consistency"] = (letters_predict(clfs[r], fr) == lab).double().mean().item()
        M.update(_named(s, f"_real_floor{tag}"))
    held = letters_features(clfs[R], real_letters(R, None, "test", 0)[0])
    M["fd_letters_heldout_fonts"] = _fid.fd_features(held, refs[R]["features"])
    return M


# ---------------------------------------------------------------------------------- Inception metrics


def _dataset_for(net_info: dict, dataset: str | None):
    if dataset:
        return dataset
    tc = net_info.get("train_config") or {}
    return tc.get("dataset", "letters")


def inception_reference(extractor, info: dict, dataset: str, resolution: int, n: int | None = None,
                        sfid: bool = False, batch: int = 64, progress: bool = False) -> dict:
    """Features of the dataset's training split at `resolution` under a torch-fidelity extractor,
    cached as .npz under cache_dir()/eval keyed by dataset, resolution, n and extractor hash."""
    name = Path(str(dataset)).stem
    key = f"{name}-train-n{n or 'all'}-r{resolution}-{info['extractor']}-{info['extractor_sha256'][:16]}" \
          f"-{'+'.join(info['features'])}{'-sfid' if sfid else ''}"
    path = cache_dir() / "eval" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: torch.from_numpy(z[k]) for k in z.files} | {"path": str(path)}
    if dataset == "letters":                             # the same reference sets as the letters metrics
        images, labels = real_letters(resolution, n, "train", 0)
        batches = [(images[i:i + batch], labels[i:i + batch]) for i in range(0, len(images), batch)]
    else:
        ds = load_dataset(dataset, resolution=resolution, split="train")
        idx = np.arange(len(ds)) if n is None else np.sort(np.random.default_rng(0).permutation(len(ds))[:n])
        batches = (ds.get_batch(torch.from_numpy(idx[i:i + batch])) for i in range(0, len(idx), batch))
    out, labels = {}, []
    for images, lab in progress_bar(batches, desc="reference", disable=not progress, leave=False):
        for k, v in _fid.extract(extractor, images, sfid=sfid).items():
            out.setdefault(k, []).append(v)
        if lab is not None:
            labels.append(lab)
    arrays = {k: torch.cat(v).numpy() for k, v in out.items()}
    if labels:
        arrays["labels"] = torch.cat(labels).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return {k: torch.from_numpy(v) for k, v in arrays.items()} | {"path": str(path)}


def _extracted_samples(G, ext, ref: dict, num: int, R: int, seed: int, psi: float, batch: int, device,
                       progress: bool, sfid: bool = False) -> dict:
    """Extractor features {layer: [num, d]} of samples 0 .. num - 1 rendered at R (the denser grid above
    the training resolution), classes drawn by the reference set's label distribution."""
    lab = ref.get("labels")
    probs = np.bincount(lab.numpy(), minlength=G.cfg.num_classes) if (lab is not None and G.cfg.conditional) else None
    gen = {}
    for _, _, ws in sample_batches(G, num, seed, psi, probs, batch, device, progress, "samples"):
        img = to_uint8(render(G, ws, R, R, extent=_dense_extent(G.cfg.resolution, R / G.cfg.resolution)))
        for k, v in _fid.extract(ext, img, sfid=sfid).items():
            gen.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in gen.items()}


def evaluate_inception(network, metrics=INCEPTION_METRICS, extractor: str = "inception-v3-compat",
                       weights=None, num: int = 50000, seed: int = 0, psi: float = 1.0, dataset: str | None = None,
                       resolution: int | None = None, reference_n: int | None = None, batch: int = 64,
                       device="cpu", progress: bool = True, suffix: str = "") -> dict:
    """FID / KID / IS / precision-recall / sFID (any of INCEPTION_METRICS) of `num` generated samples
    against the training split of `dataset` (default: the checkpoint's), via a torch-fidelity
    extractor: "inception-v3-compat" (weights as in `fid.inception_weights`), "inception-v3-random"
    (random-feature FID) or any registered one. Keys: fid, kid, kid_std, is, is_std, precision,
    recall, sfid, each + suffix."""
    unknown = sorted(set(metrics) - set(INCEPTION_METRICS))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected some of {list(INCEPTION_METRICS)}")
    G, net_info = load_network(network, device)
    R = resolution or G.cfg.resolution
    dataset = _dataset_for(net_info, dataset)
    ext, info = _fid.create_extractor(extractor, weights=weights, device=device)
    sfid = "sfid" in metrics
    ref = inception_reference(ext, info, dataset, R, reference_n, sfid=sfid, progress=progress)
    t0 = time.perf_counter()
    gen = _extracted_samples(G, ext, ref, num, R, seed, psi, batch, device, progress, sfid)
    cls = type(ext)
    layer = {m: cls.get_default_feature_layer_for_metric(m) for m in ("fid", "kid", "prc", "isc")}
    M = {}
    if "fid" in metrics:
        M["fid"] = _fid.fd_features(gen[layer["fid"]], ref[layer["fid"]])
    if "kid" in metrics:
        kd = _fid.kid(gen[layer["kid"]], ref[layer["kid"]])
        M.update(kid=kd["kid"], kid_std=kd["kid_std"])
    if "pr" in metrics:
        M.update(_fid.precision_recall(gen[layer["prc"]], ref[layer["prc"]]))
    if "is" in metrics:
        M.update(_fid.inception_score(gen[layer["isc"]]))
    if sfid:
        M["sfid"] = _fid.fd_features(gen["sfid"], ref["sfid"])
    M = {k + suffix: v for k, v in M.items()}
    protocol = _protocol(
        G, net_info, num, seed, psi, metrics=list(metrics), resolution=R,
        reference={"dataset": dataset, "split": "train", "n": len(ref[layer["fid"]])},
        extractor=info["extractor"], extractor_sha256=info["extractor_sha256"], weights_file=info["weights_file"],
        weights_sha256=info["weights_sha256"], feature_layers=layer,
        sfid_layer=f"{_fid.spatial_module_name(ext)}[:, :{_fid.SFID_CHANNELS}] (TF mixed_6/conv), 17x17 -> 2023"
        if sfid else None,
        resize_filter="torch-fidelity's TF1-compatible bilinear resize to the extractor's input (299 for "
                      "Inception) inside the extractor; 1-channel images repeated to RGB",
        kid={"subsets": 100, "subset_size": "min(1000, sizes)", "kernel": "(x.y / d + 1)^3"},
        precision_recall={"k": 3}, seconds=time.perf_counter() - t0)
    return {"metrics": M, "protocol": protocol}


def evaluate_halves(network, extractor: str = "inception-v3-random", weights=None, seed: int = 0, psi: float = 1.0,
                    dataset: str | None = None, floor_seed: int = FLOOR_SEED, batch: int = 64, device="cpu",
                    progress: bool = True) -> dict:
    """Letters-free quality with a real-vs-real floor, for data without a held-out split (emoji, a
    folder): FD, precision and recall (k = 3) in the features of a torch-fidelity extractor (default
    the random-weight Inception-v3 of `fid_random`, which needs no download). The training split is cut
    at random (`floor_seed`) into halves A and B; the generator's first |A| samples and A itself are each
    scored against B, so the model and its floor share every sample size (FD's and the k-NN radii's
    finite-sample biases included). Keys fd_<tag>, precision_<tag>, recall_<tag> and each + "_floor",
    tag "random" for the random-weight Inception, else the extractor's name."""
    G, net_info = load_network(network, device)
    R = G.cfg.resolution
    dataset = _dataset_for(net_info, dataset)
    ext, info = _fid.create_extractor(extractor, weights=weights, device=device)
    ref = inception_reference(ext, info, dataset, R, progress=progress)
    layer = {m: type(ext).get_default_feature_layer_for_metric(m) for m in ("fid", "prc")}
    n = len(ref[layer["fid"]])
    if n < 4:
        raise ValueError(f"dataset: {dataset!r} has {n} images; the half-split floor needs at least 4")
    perm = torch.from_numpy(np.random.default_rng(floor_seed).permutation(n))
    half_a, half_b = perm[: n // 2], perm[n // 2:]
    t0 = time.perf_counter()
    gen = _extracted_samples(G, ext, ref, len(half_a), R, seed, psi, batch, device, progress)
    tag = "random" if extractor == "inception-v3-random" else extractor.replace("-", "_")
    b = {k: ref[k][half_b] for k in set(layer.values())}
    M = {}
    for name, feats in (("", gen), ("_floor", {k: ref[k][half_a] for k in set(layer.values())})):
        pr = _fid.precision_recall(feats[layer["prc"]], b[layer["prc"]])
        M.update({f"fd_{tag}{name}": _fid.fd_features(feats[layer["fid"]], b[layer["fid"]]),
                  f"precision_{tag}{name}": pr["precision"], f"recall_{tag}{name}": pr["recall"]})
    protocol = _protocol(
        G, net_info, len(half_a), seed, psi, resolution=R, extractor=info["extractor"],
        extractor_sha256=info["extractor_sha256"], weights_file=info["weights_file"], feature_layers=layer,
        reference={"dataset": dataset, "split": "train", "n": n, "half_a": len(half_a), "half_b": len(half_b),
                   "floor_seed": floor_seed,
                   "split_rule": "numpy.random.default_rng(floor_seed).permutation(n): first n // 2 = A, rest = B"},
        scored="generated (|A| samples) vs B; floor: A vs B", precision_recall={"k": 3},
        seconds=time.perf_counter() - t0)
    return {"metrics": M, "protocol": protocol}


# ------------------------------------------------------------------------------------ while training

TICK_METRICS = ("fd_letters", "precision_letters", "recall_letters", "class_consistency_letters")


def tick_evaluator(cfg: TrainConfig, classifiers: dict | None = None):
    """The in-training quality check of a training config: a callable G -> {metric: value} scoring
    cfg.eval_num fixed latents (samples 0 .. eval_num - 1 of `sample_codes`, seed 0) with the letters
    protocol at the training resolution: letters-FD, precision, recall and class consistency against
    the training split. None when cfg.eval_ticks is 0, or for data without an offline feature
    extractor (only the letters data has one; a note says so). `classifiers` ({resolution: letters CNN})
    replaces the cached letters classifier (tests use a random one)."""
    if not cfg.eval_ticks:
        return None
    if cfg.dataset != "letters":
        print(f"eval_ticks: no in-training quality metrics for dataset {cfg.dataset!r} (the offline letters "
              f"features only apply to the letters data)")
        return None

    def evaluate_tick(G) -> dict:
        device = next(G.parameters()).device                     # score where G is: never move it
        r = evaluate_letters(G, num=cfg.eval_num, seed=0, ks=(), floors=False, progress=False, device=device,
                             classifiers=classifiers)
        return {k: r["metrics"][k] for k in TICK_METRICS if k in r["metrics"]}
    return evaluate_tick


# ----------------------------------------------------------------------------------- entry points


def evaluate(network, metrics=("letters",), num: int | None = None, resolution: int | None = None,
             inception_weights=None, extractor: str = "inception-v3-compat", **kw) -> dict:
    """Run metric groups: "letters" (fd/kid/precision/recall/class consistency + floors), "hires"
    (the Table 3 protocol, implies letters), "fid", "kid", "is", "pr", "sfid" (Inception via
    torch-fidelity), "fid_random" (random-feature Inception), "halves" (random-feature FD / precision /
    recall with a half-split real floor, `evaluate_halves`; `num` does not apply: half the training set;
    another `extractor` than the default replaces the random Inception). Returns {"metrics", "protocol": {group: ...}}."""
    metrics = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected some of {list(ALL_METRICS)}")
    if num is not None:
        num = check_size("num", num)
    if resolution is not None:
        resolution = check_size("resolution", resolution)
    if "psi" in kw:
        kw["psi"] = check_psi(kw["psi"])
    if "batch" in kw:
        kw["batch"] = check_size("batch", kw["batch"])
    G, _ = load_network(network)
    if num is None:
        num = 50000 if G.preset in ("imagenet", "ffhq") else 10000
    out = {"metrics": {}, "protocol": {}}
    common = {k: kw[k] for k in ("seed", "psi", "batch", "device", "progress") if k in kw}
    if "letters" in metrics or "hires" in metrics:
        if resolution not in (None, G.cfg.resolution):
            raise ValueError(f"resolution: letters metrics evaluate at the training resolution "
                             f"{G.cfg.resolution} (and kR with 'hires'), got {resolution}")
        lk = {k: kw[k] for k in ("hires_num", "classifier_epochs", "reference_n", "alignment") if k in kw}
        r = evaluate_letters(network, num, ks=KS if "hires" in metrics else (), **common, **lk)
        out["metrics"].update(r["metrics"])
        out["protocol"]["letters"] = r["protocol"]
    inc = [m for m in metrics if m in INCEPTION_METRICS]
    if "reference_n" in kw:
        common["reference_n"] = kw["reference_n"]
    if inc:
        r = evaluate_inception(network, inc, extractor, inception_weights, num, resolution=resolution, **common)
        out["metrics"].update(r["metrics"])
        out["protocol"]["inception"] = r["protocol"]
    if "fid_random" in metrics:
        r = evaluate_inception(network, ["fid"], "inception-v3-random", None, num, resolution=resolution,
                               suffix="_random", **common)
        out["metrics"].update(r["metrics"])
        out["protocol"]["fid_random"] = r["protocol"]
    if "halves" in metrics:
        if resolution not in (None, G.cfg.resolution):
            raise ValueError(f"resolution: 'halves' scores at the training resolution {G.cfg.resolution}, got {resolution}")
        ext = "inception-v3-random" if extractor == "inception-v3-compat" else extractor   # no download needed
        r = evaluate_halves(network, extractor=ext, **{k: v for k, v in common.items() if k != "reference_n"})
        out["metrics"].update(r["metrics"])
        out["protocol"]["halves"] = r["protocol"]
    return out


def bench(network=DEFAULT_CHECKPOINT, num: int = 10000, batch: int = 256, device="cpu") -> dict:
    """Seconds to evaluate `num` samples of a letters model at 1x (render, letters features, FD, KID,
    precision/recall, class consistency) with the classifier and reference statistics cached; the
    setup (first use: classifier training, reference features) is timed separately."""
    t0 = time.perf_counter()
    evaluate_letters(network, num=16, ks=(), floors=False, progress=False, batch=batch, device=device)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = evaluate_letters(network, num=num, ks=(), floors=False, progress=False, batch=batch, device=device)
    total = time.perf_counter() - t0
    return {"bench": "letters_eval", "num": num, "seconds": total, "samples_per_s": num / total,
            "stages": r["seconds"], "setup_seconds_first_call": setup, "threads": torch.get_num_threads(),
            "device": str(device), "fd_letters": r["metrics"]["fd_letters"], **versions()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polyinr.metrics", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default=DEFAULT_CHECKPOINT, help="generator checkpoint (default: the reference letters model)")
    ap.add_argument("--metrics", default="letters", help=f"comma-separated, of {','.join(ALL_METRICS)}")
    ap.add_argument("--num", type=int, default=None, help="generated samples (default 50k for imagenet/ffhq, else 10k)")
    ap.add_argument("--resolution", type=int, default=None, help="evaluation resolution (default: training resolution)")
    ap.add_argument("--out", default=None, help="write {metrics, protocol} as JSON here")
    ap.add_argument("--inception-weights", default=None,
                    help=f"local {_fid.INCEPTION_FILE} (or set {_fid.INCEPTION_ENV})")
    ap.add_argument("--psi", type=float, default=1.0, help="truncation psi")
    ap.add_argument("--seed", type=int, default=0, help="sample k uses numpy default_rng([seed, k])")
    ap.add_argument("--hires-num", type=int, default=1000, help="samples of the higher-resolution table")
    ap.add_argument("--reference-num", type=int, default=None,
                    help="real reference images (default: the whole training split; Inception on a CPU is slow)")
    ap.add_argument("--alignment", default="centers", choices=["centers", "corners"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bench", action="store_true", help="print one JSON line: seconds to evaluate --num samples")
    args = ap.parse_args(argv)
    if args.bench:
        print(json.dumps(bench(args.network, args.num or 10000, device=args.device)))
        return 0
    r = evaluate(args.network, args.metrics, num=args.num, resolution=args.resolution,
                 inception_weights=args.inception_weights, seed=args.seed, psi=args.psi,
                 hires_num=args.hires_num, reference_n=args.reference_num, alignment=args.alignment,
                 batch=args.batch, device=args.device)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, r)
    print(json.dumps(r["metrics"]))
    return 0
