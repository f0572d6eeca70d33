"""Distribution metrics on feature vectors, and the feature extractors that produce them.

Statistics (any feature space; F features, d dimensions, float64 throughout):
- `frechet_distance` between Gaussians fitted to two feature sets, FD = |mu1 - mu2|^2
  + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) (Heusel et al. 2017). With Inception pool features it is
  FID; with the letters classifier's features it is `fd_letters`; with `mixed_6/conv` it is sFID.
- `kid`: the unbiased MMD^2 estimate with the polynomial kernel k(x, y) = (x.y / d + 1)^3 over random
  subsets (Binkowski et al. 2018), subset choice identical to torch-fidelity's for the same seed.
- `precision_recall`: k-NN manifolds, k = 3 (Kynkaanniemi et al. 2019).

Extractors are torch-fidelity feature extractors (uint8 [B, 3, H, W] in, a tuple of feature tensors
out), created from its registry:
- "inception-v3-compat": torch-fidelity's TF-Inception port (FID, KID, IS, precision/recall). Its
  weights come from `inception_weights()`: a file you pass (`--inception-weights PATH` or
  $POLYINR_INCEPTION_WEIGHTS), torch.hub's cache, or torch-fidelity's download URL; the file's
  SHA-256 is checked. Offline without a file it is an `InceptionWeightsError` saying how to supply one.
- "inception-v3-random": the same architecture randomly initialised from a fixed seed
  (random-feature FID: no download, comparable only with itself).
- "polyinr-tiny": a small random conv net for tests and smoke runs (not a meaningful metric).

sFID (Nash et al. 2021; as in guided-diffusion's evaluator and StyleGAN-XL) is the Frechet distance of
the first 7 channels of TF-Inception's `mixed_6/conv` output, 17 x 17, flattened to 2023 dimensions.
The TF graph names its Inception blocks mixed, mixed_1, ..., mixed_10: mixed..mixed_2 are the 35x35
blocks (torch-fidelity's Mixed_5b..5d), mixed_3 the 35->17 reduction (Mixed_6a), mixed_4..mixed_7 the
four 17x17 blocks (Mixed_6b..6e), so mixed_6 is Mixed_6d. Its `conv` is the block's first op, the 1x1
branch, and the tensor `mixed_6/conv:0` is that conv after batch norm and ReLU, i.e. the output of
torch-fidelity's `Mixed_6d.branch1x1` (a BasicConv2d: conv, bn, relu) [B, 192, 17, 17]. We hook that
module, keep channels :7 and flatten in TF's (H, W, C) order (the order does not change the FD).
"""
from __future__ import annotations

import functools
import hashlib
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.files import sha256_file

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
# torch.hub convention: the file name carries the first hex digits of the file's SHA-256; this is the
# check torch.hub itself applies (check_hash=True). The full digest, recorded by a third party, is
# 6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2; results record the digest we see.
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_ENV = "POLYINR_INCEPTION_WEIGHTS"
SFID_MODULE = "Mixed_6d.branch1x1"      # torch-fidelity module == TF mixed_6/conv (see module docstring)
SFID_CHANNELS = 7


class InceptionWeightsError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------ statistics


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """features [F, d] -> (mean [d], covariance [d, d]) in float64, covariance with ddof = 1."""
    x = _as_float64(features, "features")
    if x.shape[0] < 2:
        raise ValueError(f"features: need at least 2 samples for a covariance, got {x.shape[0]}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _as_float64(a, name: str) -> np.ndarray:
    x = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    x = x.astype(np.float64, copy=False)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [samples, dims], got shape {list(x.shape)}")
    return x


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64. The trace term uses the
    symmetric form tr (S1^1/2 S2 S1^1/2)^1/2 = tr (S1 S2)^1/2, whose eigenvalues are real and >= 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: shapes do not match: mu {mu1.shape} {mu2.shape}, "
                         f"sigma {s1.shape} {s2.shape}")
    r1 = _sqrt_psd(s1)
    m = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fd_features(f1, f2) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets [F1, d], [F2, d]."""
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between samples x [m, d] and y [m, d] (equal sizes, as in Binkowski et al.) with
    k(a, b) = (gamma a.b + coef0)^degree, gamma = 1/d by default: the within-set sums skip the diagonal
    (m (m - 1) pairs), the cross term uses all m^2 pairs."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"mmd2_unbiased: expected two sets of equal size >= 2, got {x.shape[0]} and {y.shape[0]}")
    g = 1.0 / x.shape[1] if gamma is None else gamma
    kxx, kyy, kxy = ((a @ b.T * g + coef0) ** degree for a, b in ((x, x), (y, y), (x, y)))
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kid(f1, f2, subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
        coef0: float = 1.0, seed: int = 2020) -> dict:
    """KID: mean and std of `mmd2_unbiased` over `subsets` random subsets of `subset_size` samples of
    each set (capped at the smaller set). Same subsets as torch-fidelity's `kid_features_to_metric`
    for the same seed (its default 2020). Returns {"kid", "kid_std", "subset_size", "subsets"}."""
    x, y = _as_float64(f1, "f1"), _as_float64(f2, "f2")
    m = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.RandomState(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(x.shape[0], m, replace=False)]
        b = y[rng.choice(y.shape[0], m, replace=False)]
        vals[i] = mmd2_unbiased(a, b, degree, gamma, coef0)
    return {"kid": float(vals.mean()), "kid_std": float(vals.std()), "subset_size": m, "subsets": subsets}


def _knn_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of every row of x to its k-th nearest other row (itself counts as the 0-th)."""
    if x.shape[0] <= k:
        raise ValueError(f"precision_recall: need more than k = {k} samples per set, got {x.shape[0]}")
    return torch.cat([torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values
                      for i in range(0, x.shape[0], chunk)])


def _inside(a: torch.Tensor, b: torch.Tensor, radii_b: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each row of a: is it inside the ball of radius radii_b[j] around some row b[j]?"""
    return torch.cat([(torch.cdist(a[i:i + chunk], b) <= radii_b).any(dim=1)
                      for i in range(0, a.shape[0], chunk)])


def precision_recall(fake, real, k: int = 3, chunk: int = 2048) -> dict:
    """k-NN precision and recall (Kynkaanniemi et al. 2019): precision = share of fake samples inside
    the real manifold (union of balls around each real sample reaching its k-th nearest real
    neighbour), recall = share of real samples inside the fake manifold. Float64, chunked."""
    f = torch.from_numpy(_as_float64(fake, "fake"))
    r = torch.from_numpy(_as_float64(real, "real"))
    precision = _inside(f, r, _knn_radii(r, k, chunk), chunk).double().mean().item()
    recall = _inside(r, f, _knn_radii(f, k, chunk), chunk).double().mean().item()
    return {"precision": precision, "recall": recall}


def inception_score(logits, splits: int = 10, seed: int = 2020) -> dict:
    """IS from unbiased Inception logits [F, 1008], torch-fidelity's implementation and defaults."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    out = isc_features_to_metric(torch.as_tensor(logits), splits=splits, shuffle=True, rng_seed=seed)
    return {"is": out["inception_score_mean"], "is_std": out["inception_score_std"]}


# ---------------------------------------------------------------------------------- Inception weights


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("POLYINR_OFFLINE", "HF_HUB_OFFLINE"))


def _how_to_supply() -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return (f"Download {INCEPTION_URL} on a machine with network access (SHA-256 starts with "
            f"{INCEPTION_SHA256_PREFIX}), then pass it with --inception-weights PATH (CLI), "
            f"inception_weights=PATH (Python) or the environment variable {INCEPTION_ENV}=PATH, or copy it "
            f"to {hub}, where torch.hub and torch-fidelity look. Metrics that need no download: "
            f"fid_random (random-feature Inception) and the letters metrics (fd_letters, ...).")


def check_inception_weights(path) -> str:
    """SHA-256 of the file at `path`; an InceptionWeightsError unless it starts with the expected prefix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InceptionWeightsError(f"inception weights: {str(path)!r} is not a file. {_how_to_supply()}")
    digest = sha256_file(path)
    if not digest.startswith(INCEPTION_SHA256_PREFIX):
        raise InceptionWeightsError(
            f"inception weights: {str(path)!r} has SHA-256 {digest}, expected one starting with "
            f"{INCEPTION_SHA256_PREFIX} ({INCEPTION_FILE}); the file is corrupt or a different network. "
            f"{_how_to_supply()}")
    return digest


def inception_weights(path=None, download: bool | None = None) -> tuple[Path, str]:
    """Locate torch-fidelity's TF-Inception weights and check them: `path`, else $POLYINR_INCEPTION_WEIGHTS,
    else torch.hub's cache (where torch-fidelity's own download lands), else download from
    torch-fidelity's URL into that cache (unless offline: download=False, POLYINR_OFFLINE=1 or
    HF_HUB_OFFLINE=1). Returns (path, sha256)."""
    path = path or os.environ.get(INCEPTION_ENV) or None
    if path:
        return Path(path).expanduser(), check_inception_weights(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached, check_inception_weights(cached)
    if download is False or (download is None and _offline()):
        raise InceptionWeightsError(f"inception weights: no file given and none cached at {cached}, and this "
                                    f"process is offline. {_how_to_supply()}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), hash_prefix=None, progress=False)
    except Exception as e:  # URLError, HTTPError, OSError, timeouts
        raise InceptionWeightsError(f"inception weights: download of {INCEPTION_URL} failed "
                                    f"({type(e).__name__}: {e}). {_how_to_supply()}") from e
    return cached, check_inception_weights(cached)


# ------------------------------------------------------------------------------------- extractors


def _fidelity():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    return FeatureExtractorBase, FeatureExtractorInceptionV3


@functools.lru_cache(maxsize=None)
def _random_inception_class():
    _, Inception = _fidelity()

    class RandomInceptionV3(Inception):
        """torch-fidelity's Inception-v3 with random weights drawn from SEED: convolutions He-normal
        (fan in, ReLU gain), batch norm at identity statistics, the classifier N(0, 1/fan_in), so
        activations keep their scale through the network (random-feature FID)."""
        SEED = 0

        def __init__(self, name, features_list, **kwargs):
            empty = io.BytesIO()
            torch.save({}, empty)
            empty.seek(0)
            kwargs["feature_extractor_weights_path"] = empty        # torch.load reads file objects
            super().__init__(name, features_list, **kwargs)

        def load_state_dict(self, state_dict, strict=True, assign=False):
            if state_dict:
                return super().load_state_dict(state_dict, strict, assign)
            g = torch.Generator().manual_seed(self.SEED)
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        fan_in = m.weight[0].numel()
                        std = math.sqrt((2.0 if isinstance(m, nn.Conv2d) else 1.0) / fan_in)
                        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                        if m.bias is not None:
                            m.bias.zero_()
            return nn.modules.module._IncompatibleKeys([], [])

    return RandomInceptionV3


@functools.lru_cache(maxsize=None)
def _tiny_class():
    Base, _ = _fidelity()

    class TinyExtractor(Base):
        """A small fixed random conv net with torch-fidelity's extractor interface, for tests and
        smoke runs: uint8 [B, 3, H, W] -> resized to 34 x 34 -> `spatial` [B, 8, 17, 17] (the sFID
        layer) -> "feat" [B, 16] (FID/KID/PR) and "logits_unbiased" [B, 10] (IS)."""
        SPATIAL_MODULE = "spatial"

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                self.spatial = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
                self.fc = nn.Linear(8, 16)
                self.logits = nn.Linear(16, 10)
            self.requires_grad_(False).eval()

        def forward(self, x):
            x = F.interpolate(x.float() / 127.5 - 1, size=(34, 34), mode="bilinear", align_corners=False)
            feat = self.fc(self.spatial(x).mean(dim=(2, 3)))
            out = {"feat": feat, "logits_unbiased": self.logits(feat)}
            return tuple(out[a] for a in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return "feat", "logits_unbiased"

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits_unbiased", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 4, 4, dtype=torch.uint8)

    return TinyExtractor


def register_extractor(name: str, cls) -> None:
    """torch-fidelity's `register_feature_extractor`, but a second registration of the same class is a no-op."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
    if FEATURE_EXTRACTORS_REGISTRY.get(name) is cls:
        return
    if name in FEATURE_EXTRACTORS_REGISTRY and FEATURE_EXTRACTORS_REGISTRY[name].__qualname__ != cls.__qualname__:
        raise ValueError(f"feature extractor {name!r} is already registered as {FEATURE_EXTRACTORS_REGISTRY[name]}")
    FEATURE_EXTRACTORS_REGISTRY.pop(name, None)
    register_feature_extractor(name, cls)


_BUILTIN = {"inception-v3-random": _random_inception_class, "polyinr-tiny": _tiny_class}


def create_extractor(name: str = "inception-v3-compat", features=None, weights=None, device="cpu"):
    """A torch-fidelity feature extractor from its registry (ours registered on first use), eval mode,
    on `device`. `features` defaults to the FID, KID, PR and IS layers of that extractor. Returns
    (extractor, info) with info = {"extractor", "features", "extractor_sha256", "weights_file",
    "weights_sha256"}; extractor_sha256 hashes its state dict (identifies random weights too)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor
    if name in _BUILTIN:
        register_extractor(name, _BUILTIN[name]())
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        raise ValueError(f"extractor: {name!r} is not a registered torch-fidelity feature extractor; known: "
                         f"{sorted(FEATURE_EXTRACTORS_REGISTRY)}")
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    if features is None:
        features = sorted({cls.get_default_feature_layer_for_metric(m) for m in ("fid", "kid", "prc", "isc")})
    kw, info = {}, {"extractor": name, "features": list(features), "weights_file": None, "weights_sha256": None}
    if name == "inception-v3-compat":
        path, digest = inception_weights(weights)
        kw["feature_extractor_weights_path"] = str(path)
        info.update(weights_file=str(path), weights_sha256=digest)
    ext = create_feature_extractor(name, list(features), cuda=False, verbose=False, **kw).to(device)
    info["extractor_sha256"] = module_sha256(ext)
    return ext, info


def module_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def spatial_module_name(extractor) -> str:
    return getattr(extractor, "SPATIAL_MODULE", SFID_MODULE)


def spatial_features(activation: torch.Tensor, channels: int = SFID_CHANNELS) -> torch.Tensor:
    """[B, C, H, W] activation -> [B, H * W * channels]: the first `channels` channels, flattened in
    TF's (H, W, C) order (for mixed_6/conv: 17 * 17 * 7 = 2023)."""
    if activation.dim() != 4 or activation.shape[1] < channels:
        raise ValueError(f"spatial_features: expected [B, >= {channels}, H, W], got {list(activation.shape)}")
    return activation[:, :channels].permute(0, 2, 3, 1).reshape(activation.shape[0], -1)


@torch.inference_mode()
def extract(extractor, images_u8: torch.Tensor, sfid: bool = False) -> dict:
    """Run a torch-fidelity extractor on uint8 images [B, C, H, W] (1-channel images repeated to 3):
    {feature name: [B, d] float32}, plus "sfid" [B, 2023] from the hooked `mixed_6/conv` when sfid."""
    if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
        raise ValueError(f"images_u8: expected uint8 [B, C, H, W], got {images_u8.dtype} {list(images_u8.shape)}")
    x = images_u8.expand(-1, 3, -1, -1) if images_u8.shape[1] == 1 else images_u8
    device = next(extractor.parameters()).device
    captured = []
    hook = extractor.get_submodule(spatial_module_name(extractor)).register_forward_hook(
        lambda m, i, o: captured.append(o)) if sfid else None
    try:
        out = extractor.convert_features_tuple_to_dict(extractor(x.to(device)))
    finally:
        if hook is not None:
            hook.remove()
    out = {k: v.float().cpu() for k, v in out.items()}
    if sfid:
        if not captured:
            raise RuntimeError(f"sfid: module {spatial_module_name(extractor)!r} did not run for the requested "
                               f"features {list(extractor.features_list)}; request a deeper layer (e.g. '2048')")
        out["sfid"] = spatial_features(captured[-1]).float().cpu()
    return out
