"""Evaluation: Frechet distance, KID and precision/recall against closed forms and torch-fidelity,
sFID mechanics, Inception weights offline, sampling and the higher-resolution geometry, protocol
records, and the 03_fid notebook."""
import hashlib
import math

import numpy as np
import pytest
import torch

import polyinr
from polyinr.core.config import get_train_preset
from polyinr.core.grid import pixel_center_extent
from polyinr.core.images import upsample
from polyinr.evaluation import fid
from polyinr.evaluation import protocols as E
from polyinr.evaluation.letters import random_letters_cnn, stem_for
from polyinr.tools.cli import run_cli
from polyinr.training.classifiers import LettersCNN, letters_classifier


def _gauss(n, d, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


# ------------------------------------------------------------------------------------ Frechet distance

def test_frechet_distance_closed_forms():
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2 with standard deviations s
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4 + 1, rel=1e-12)
    # diagonal, and the same pair rotated by one orthogonal Q (commuting, not diagonal): sum (sqrt a - sqrt b)^2
    a, b, dmu = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25]), np.array([0.5, -1.0, 2.0])
    expect = dmu @ dmu + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid.frechet_distance(dmu, np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expect, rel=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    assert fid.frechet_distance(q @ dmu, q @ np.diag(a) @ q.T, np.zeros(3), q @ np.diag(b) @ q.T) == \
        pytest.approx(expect, rel=1e-10)
    # non-commuting 2x2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); S1 S2 = [[2, 3], [1, 6]], tr 8, det 9
    s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 3.0]])
    assert fid.frechet_distance([0, 0], s1, [0, 0], s2) == pytest.approx(8 - 2 * math.sqrt(14), rel=1e-12)


def test_frechet_distance_matches_torch_fidelity():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    for d, shift, scale in ((64, 0.1, 1.1), (256, 0.0, 0.9)):
        a, b = _gauss(3000, d, 1), _gauss(2000, d, 2, shift, scale)
        ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)
        ours = fid.fd_features(a, b)
        assert abs(ours - ref["frechet_inception_distance"]) <= 1e-6 * abs(ref["frechet_inception_distance"])


def test_identical_sets_give_zero_fd_and_full_precision_recall():
    a = _gauss(500, 16, 3)
    assert abs(fid.fd_features(a, a)) < 1e-10 * float(a.var(0).sum())
    assert fid.precision_recall(a, a) == {"precision": 1.0, "recall": 1.0}
    assert fid.fd_features(a, a + 0.5) == pytest.approx(16 * 0.25, rel=1e-9)     # a shift only moves the mean


def test_precision_recall_matches_torch_fidelity_and_by_hand():
    from torch_fidelity.metric_prc import calculate_precision_recall_full
    real, fake = _gauss(400, 8, 4), _gauss(300, 8, 5, 0.7, 1.3)
    p, r = calculate_precision_recall_full(fake, real, neighborhood=3)
    assert fid.precision_recall(fake, real, k=3) == {"precision": pytest.approx(p), "recall": pytest.approx(r)}
    # 1-D by hand, k = 1: real {0, 1, 2} (radii 1, 1, 1), fake {0.5, 10, 11} (radii 9.5, 1, 1)
    real1, fake1 = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.5], [10.0], [11.0]])
    assert fid.precision_recall(fake1, real1, k=1) == {"precision": pytest.approx(1 / 3), "recall": 1.0}
    with pytest.raises(ValueError, match="k = 3"):
        fid.precision_recall(fake1, real1, k=3)


# ----------------------------------------------------------------------------------------------- KID

def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric
    a, b = _gauss(600, 32, 6), _gauss(700, 32, 7, 0.2)
    ref = kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=300, verbose=False)
    ours = fid.kid(a, b, subsets=20, subset_size=300)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-8)
    assert fid.kid(a, b, subsets=3, subset_size=5000)["subset_size"] == 600      # capped at the smaller set


def test_kid_is_unbiased():
    rng = np.random.default_rng(0)
    reps, m, d = 300, 40, 4

    def estimates(shift, **kw):
        return np.array([fid.mmd2_unbiased(rng.standard_normal((m, d)), rng.standard_normal((m, d)) + shift, **kw)
                         for _ in range(reps)])

    same = estimates(0.0)                                   # cubic kernel, one distribution: E = 0
    assert abs(same.mean()) < 4 * same.std() / math.sqrt(reps)
    # the biased V-statistic (diagonal included) on the same samples is clearly positive: the test can fail
    x, y = rng.standard_normal((m, d)), rng.standard_normal((m, d))
    kxx, kyy, kxy = ((u @ v.T / d + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
    assert (kxx.mean() + kyy.mean() - 2 * kxy.mean()) > fid.mmd2_unbiased(x, y) + 0.1
    # linear kernel x.y + 1: MMD^2 = |mu_x - mu_y|^2 exactly in expectation
    delta = np.array([0.3, -0.2, 0.0, 0.4])
    lin = estimates(delta, degree=1, gamma=1.0)
    assert abs(lin.mean() - delta @ delta) < 4 * lin.std() / math.sqrt(reps)
    assert estimates(delta).mean() > 10 * same.std() / math.sqrt(reps)   # cubic kernel sees the shift


# ---------------------------------------------------------------------------------------------- sFID

def _pool_extractor():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class PoolExtractor(FeatureExtractorBase):
        """Spatial layer = the image average-pooled to 17 x 17, channel c + 3 = channel c (8 channels)."""
        SPATIAL_MODULE = "pool"

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            mix = torch.nn.Conv2d(3, 8, 1, bias=False)                     # output channel c reads input c mod 3
            mix.weight.data = (torch.arange(8)[:, None] % 3 == torch.arange(3)[None]).float()[..., None, None]
            self.pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(17), mix)

        def forward(self, x):
            return (self.pool(x.float()).mean(dim=(2, 3)),)                # spatial [B, 8, 17, 17] -> [B, 8]

        @staticmethod
        def get_provided_features_list():
            return ("mean",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "mean"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 4, 4, dtype=torch.uint8)

    return PoolExtractor


def test_sfid_on_a_tiny_registered_extractor():
    fid.register_extractor("test-pool-17", _pool_extractor())
    fid.register_extractor("test-pool-17", _pool_extractor())            # idempotent per class name
    ext, info = fid.create_extractor("test-pool-17")
    assert info["features"] == ["mean"] and len(info["extractor_sha256"]) == 64
    g = torch.Generator().manual_seed(0)
    a = torch.randint(40, 200, (48, 3, 34, 34), generator=g, dtype=torch.uint8)
    fa = fid.extract(ext, a, sfid=True)
    assert fa["sfid"].shape == (48, 7 * 17 * 17) == (48, 2023)
    pooled = torch.nn.functional.adaptive_avg_pool2d(a.double(), 17)   # TF (H, W, C) order, channels :7
    expect = torch.cat([pooled, pooled, pooled[:, :2]], 1)[:, :7].permute(0, 2, 3, 1).reshape(48, -1)
    assert torch.allclose(fa["sfid"].double(), expect, atol=1e-4)
    assert abs(fid.fd_features(fa["sfid"], fa["sfid"])) < 1e-6 * float(fa["sfid"].double().var(0).sum())
    fb = fid.extract(ext, a + 10, sfid=True)                           # every pooled value moves by 10
    assert fid.fd_features(fa["sfid"], fb["sfid"]) == pytest.approx(2023 * 10.0 ** 2, rel=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        fid.extract(ext, a.float(), sfid=True)


def test_sfid_hooks_mixed_6_conv_of_torch_fidelity_inception():
    """The random-feature Inception has torch-fidelity's architecture: the hooked module (TF
    mixed_6/conv) gives 17 x 17 at the 299 px input, so sFID features are 2023-d."""
    ext, info = fid.create_extractor("inception-v3-random", features=["2048"])
    shapes = []
    h = ext.get_submodule(fid.SFID_MODULE).register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    out = fid.extract(ext, torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8), sfid=True)
    h.remove()
    assert shapes == [(2, 192, 17, 17)]
    assert out["sfid"].shape == (2, 2023) and out["2048"].shape == (2, 2048)
    assert torch.isfinite(out["2048"]).all() and out["2048"].std() > 0 and out["sfid"].abs().sum() > 0
    assert info["weights_file"] is None and info["extractor"] == "inception-v3-random"


# ---------------------------------------------------------------------------------- Inception weights

def test_offline_without_inception_weights_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(fid.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(fid.InceptionWeightsError) as e:
        fid.create_extractor("inception-v3-compat")
    for needle in ("--inception-weights", fid.INCEPTION_ENV, fid.INCEPTION_URL, "offline"):
        assert needle in str(e.value)
    rc = run_cli(lambda: E.main(["--network", E.DEFAULT_CHECKPOINT, "--metrics", "fid", "--num", "4"]))
    assert rc == 2 and "--inception-weights" in capsys.readouterr().err


def test_inception_weights_sha256_is_checked(monkeypatch, tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not the inception weights")
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(fid.InceptionWeightsError, match=f"{digest}.*{fid.INCEPTION_SHA256_PREFIX}"):
        fid.inception_weights(bad)
    monkeypatch.setenv(fid.INCEPTION_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(fid.InceptionWeightsError, match="missing.pth"):
        fid.inception_weights()
    monkeypatch.setattr(fid, "INCEPTION_SHA256_PREFIX", digest[:8])       # a file with the expected hash passes
    monkeypatch.setenv(fid.INCEPTION_ENV, str(bad))
    assert fid.inception_weights() == (bad, digest)


# ------------------------------------------------------------------------------ sampling, geometry

def test_inception_score_closed_forms():
    """IS = exp E_x KL(p(y|x) || p(y)): 1 for uninformative logits, K for K equally used certain classes."""
    assert fid.inception_score(torch.zeros(200, 1008), splits=1)["is"] == pytest.approx(1.0, abs=1e-6)
    logits = torch.zeros(400, 1008)
    logits[torch.arange(400), torch.arange(400) % 4] = 60.0          # p(y|x) one-hot, p(y) uniform on 4
    out = fid.inception_score(logits, splits=1)
    assert out["is"] == pytest.approx(4.0, rel=1e-4) and out["is_std"] == pytest.approx(0.0, abs=1e-6)


def test_class_consistency_and_accuracy_by_hand():
    from torch import nn

    from polyinr.evaluation.letters import class_consistency
    from polyinr.training.classifiers import accuracy

    class Always(nn.Module):   # predicts class k for every image
        def __init__(self, k, classes):
            super().__init__()
            self.k, self.classes = k, classes

        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), self.k), self.classes).float()
    G = polyinr.build_generator("letters", width=16, levels=2)
    # every class gets n_per_class samples, so a constant classifier is right for exactly one class in 26
    assert class_consistency(G, Always(3, 26), n_per_class=2, batch=7) == pytest.approx(1 / 26)
    images = torch.zeros(5, 1, 4, 4, dtype=torch.uint8)
    assert accuracy(Always(1, 3), images, torch.tensor([1, 1, 0, 2, 1]), batch=2) == pytest.approx(3 / 5)


def test_per_sample_seeds_and_class_distribution():
    z, c = E.sample_codes(10, 7, 5, class_probs=[0.7, 0.3, 0.0])
    z2, c2 = E.sample_codes(4, 7, 5, class_probs=[0.7, 0.3, 0.0], start=3)
    assert torch.equal(z[3:7], z2) and torch.equal(c[3:7], c2)            # sample k is the same in every run
    assert not torch.equal(E.sample_codes(10, 8, 5)[0], z)
    _, c = E.sample_codes(3000, 0, 2, class_probs=[7, 3, 0])
    counts = torch.bincount(c, minlength=3).tolist()
    assert counts[2] == 0 and abs(counts[0] / 3000 - 0.7) < 0.03
    assert E.sample_codes(3, 0, 2)[1] is None


def test_dense_grid_and_bicubic_share_the_pixel_centre_geometry():
    G = polyinr.build_generator("letters", width=16, levels=3).eval()
    ws = G.mapping(torch.randn(2, G.cfg.z_dim), torch.tensor([0, 5]))
    R, k = G.cfg.resolution, 3
    native = polyinr.render(G, ws, R, R)
    dense = polyinr.render(G, ws, k * R, k * R, extent=pixel_center_extent(R, k))
    assert torch.allclose(dense[..., 1::k, 1::k], native, atol=1e-5)     # centre of dense pixel 3c+1 = native c
    assert torch.equal(upsample(native, k, clamp=None)[..., 1::k, 1::k], native)
    corners = polyinr.render(G, ws, k * R, k * R, extent=((0.0, 1.0), (0.0, 1.0)))
    assert torch.allclose(corners[..., [0, -1], :][..., [0, -1]], native[..., [0, -1], :][..., [0, -1]], atol=1e-5)
    (x0, x1), _ = pixel_center_extent(16, 8)
    assert (x1 - x0) / 127 == pytest.approx(1 / (8 * 15))                 # spacing 1 / (k (R - 1))
    with pytest.raises(ValueError, match="factor"):
        pixel_center_extent(16, 0)
    with pytest.raises(ValueError, match="ks"):
        E.stem_for(3)


def test_real_letters_subsets_are_the_split_itself():
    from polyinr.training.data import letters
    imgs, labels = E.real_letters(16, n=520, seed=0)                      # V = 1: all 520 glyphs, permuted
    ds = letters(16, "train", variants=1, seed=0, cache=False)
    key = lambda x, y: sorted(zip(y.tolist(), (bytes(a.numpy()) for a in x)))  # noqa: E731
    assert key(imgs, labels) == key(ds.images, ds.labels)
    small, lab = E.real_letters(16, n=30, seed=1)
    big, lab2 = E.real_letters(32, n=30, seed=1)
    assert torch.equal(lab, lab2) and small.shape == (30, 1, 16, 16) and big.shape == (30, 1, 32, 32)


def test_letters_cnn_stem():
    m = LettersCNN(stem=2).eval()
    assert m(torch.zeros(3, 1, 64, 64)).shape == (3, 26) and m.features(torch.zeros(3, 1, 64, 64)).shape == (3, 64)
    assert not [k for k in LettersCNN().state_dict() if k.startswith("stem")]   # stem 0: the v1 layout
    with pytest.raises(ValueError, match="stem"):
        letters_classifier(32, stem=2)


# ------------------------------------------------------------------------------------ protocol record

def test_evaluate_letters_records_the_protocol(tmp_path):
    G = polyinr.build_generator("letters", width=16, levels=3)
    ckpt = polyinr.save_checkpoint(tmp_path / "g.pt", G)
    clfs = {16 * k: random_letters_cnn(0, stem_for(k)) for k in (1, 2)}
    r = E.evaluate_letters(str(ckpt), num=12, seed=3, psi=0.7, ks=(2,), hires_num=6, classifiers=clfs,
                           reference_n=40, progress=False, batch=5, keep=4)
    p, m = r["protocol"], r["metrics"]
    for key in ("num", "seed", "psi", "sample_seeds", "reference", "floor", "resize_filter", "extractor",
                "extractor_sha256", "packages", "checkpoint_sha256", "render", "quantisation"):
        assert p[key] not in (None, "", {}), key
    assert (p["num"], p["seed"], p["psi"], p["num_hires"]) == (12, 3, 0.7, 6)
    assert p["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert p["extractor_sha256"]["32"] == fid.module_sha256(clfs[32]) and set(p["packages"]) >= {"polyinr", "torch_fidelity"}
    assert p["reference"]["n"] == 40 and p["floor"]["seed"] == E.FLOOR_SEED
    for key in ("fd_letters", "fd_letters_real_floor", "precision_letters", "recall_letters",
                "fd_letters_grid_x2", "fd_letters_bicubic_x2", "fd_letters_real_floor_x2", "kid_letters",
                "class_consistency_letters", "fd_letters_heldout_fonts"):
        assert math.isfinite(m[key]), key
    assert 0 <= m["precision_letters"] <= 1 and 0 <= m["class_consistency_letters_real_floor"] <= 1
    assert r["examples"]["grid"][2].shape == (4, 1, 32, 32) and r["examples"]["native"].shape == (4, 1, 16, 16)
    again = E.evaluate_letters(G, num=12, seed=3, psi=0.7, ks=(), classifiers=clfs, reference_n=40,
                               floors=False, progress=False, batch=12)
    assert again["metrics"]["fd_letters"] == pytest.approx(m["fd_letters"], rel=1e-6)   # batch-size independent


def test_inception_path_records_the_protocol(tmp_path):
    G = polyinr.build_generator("letters", width=16, levels=3)
    ckpt = polyinr.save_checkpoint(tmp_path / "g.pt", G)
    r = E.evaluate(str(ckpt), "fid,kid,pr,sfid", num=10, extractor="polyinr-tiny", reference_n=12, seed=2, psi=0.5,
                   batch=4, progress=False)
    p, m = r["protocol"]["inception"], r["metrics"]
    assert (p["num"], p["seed"], p["psi"], p["reference"]["n"], p["extractor"]) == (10, 2, 0.5, 12, "polyinr-tiny")
    assert p["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    ext, _ = fid.create_extractor("polyinr-tiny")
    assert p["extractor_sha256"] == fid.module_sha256(ext) and p["resize_filter"] and p["packages"]["torch_fidelity"]
    assert set(m) == {"fid", "kid", "kid_std", "precision", "recall", "sfid"} and m["fid"] > 0 and m["sfid"] > 0
    with pytest.raises(ValueError, match="metrics"):
        E.evaluate(str(ckpt), "fid,fad")


def test_evaluate_halves_scores_model_and_floor_on_equal_halves(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(13):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    cfg = polyinr.ModelConfig(z_dim=8, w_dim=16, num_classes=0, width=16, levels=3, img_channels=3, resolution=8)
    G1, G2 = (polyinr.Generator(cfg).eval() for _ in range(2))           # two random draws
    r1 = E.evaluate_halves(G1, extractor="polyinr-tiny", dataset=str(folder), floor_seed=5, batch=4, progress=False)
    r2 = E.evaluate_halves(G2, extractor="polyinr-tiny", dataset=str(folder), floor_seed=5, batch=4, progress=False)
    m1, m2 = r1["metrics"], r2["metrics"]
    ref_info = r1["protocol"]["reference"]
    assert r1["protocol"]["num"] == 6 and (ref_info["n"], ref_info["half_a"], ref_info["half_b"]) == (13, 6, 7)
    # the floor, by hand: the documented split of the reference features, A against B
    ext, info = fid.create_extractor("polyinr-tiny")
    ref = E.inception_reference(ext, info, str(folder), 8)
    perm = np.random.default_rng(5).permutation(13)
    a, b = ref["feat"][perm[:6]], ref["feat"][perm[6:]]
    pr = fid.precision_recall(a, b)
    assert m1["fd_polyinr_tiny_floor"] == pytest.approx(fid.fd_features(a, b))
    assert (m1["precision_polyinr_tiny_floor"], m1["recall_polyinr_tiny_floor"]) == (pr["precision"], pr["recall"])
    assert {k: v for k, v in m1.items() if k.endswith("_floor")} == {k: v for k, v in m2.items() if k.endswith("_floor")}
    assert m1["fd_polyinr_tiny"] != m2["fd_polyinr_tiny"]                       # two random generators
    again = E.evaluate_halves(G1, extractor="polyinr-tiny", dataset=str(folder), floor_seed=5, progress=False)
    assert again["metrics"] == pytest.approx(m1, rel=1e-6)                      # batch-size independent
    ckpt = polyinr.save_checkpoint(tmp_path / "g.pt", G1, train_config=get_train_preset("letters", dataset=str(folder)).to_dict())
    via_cli = E.evaluate(str(ckpt), "halves", extractor="polyinr-tiny", batch=4, seed=0, progress=False)
    assert via_cli["metrics"] == pytest.approx(E.evaluate_halves(G1, extractor="polyinr-tiny", dataset=str(folder),
                                                                 progress=False)["metrics"], rel=1e-6)
    assert via_cli["protocol"]["halves"]["reference"]["dataset"] == str(folder)   # the checkpoint's training data
    with pytest.raises(ValueError, match="at least 4"):
        few = tmp_path / "few"
        few.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(few / f"{i}.png")
        E.evaluate_halves(G1, extractor="polyinr-tiny", dataset=str(few), progress=False)


# ------------------------------------------------------------------------------------------- notebook



def test_tick_evaluator_scores_letters_runs_only(capsys):
    assert E.tick_evaluator(get_train_preset("letters", eval_ticks=0)) is None
    assert E.tick_evaluator(get_train_preset("letters", eval_ticks=2, dataset="digits")) is None
    assert "no in-training quality metrics for dataset 'digits'" in capsys.readouterr().out
    cfg = get_train_preset("letters", eval_ticks=2, eval_num=24, resolution=16)
    G = polyinr.build_generator("letters", width=16, levels=3).eval()
    scores = E.tick_evaluator(cfg, classifiers={16: random_letters_cnn(0)})(G)
    assert set(scores) == set(E.TICK_METRICS) and 0 <= scores["recall_letters"] <= 1
    full = E.evaluate_letters(G, num=24, ks=(), floors=False, progress=False, classifiers={16: random_letters_cnn(0)})
    assert scores == {k: full["metrics"][k] for k in E.TICK_METRICS}      # the 03_fid protocol on the first 24 samples
