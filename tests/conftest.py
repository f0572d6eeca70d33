import os

# Before anything imports huggingface_hub / timm: never wait on the network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# A fresh dataset / classifier cache per test session (inherited by the notebook kernels).
if "POLYINR_TEST_CACHE" not in os.environ:
    import tempfile
    os.environ["POLYINR_TEST_CACHE"] = os.environ["POLYINR_CACHE"] = tempfile.mkdtemp(prefix="polyinr-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_cfg():
    """A small conditional model for fast property tests."""
    return dict(width=16, levels=4, z_dim=8, w_dim=16, embed_dim=8, num_classes=5, img_channels=3)


# Generators of other kinds for the qualitative notebooks (random weights): a colour emoji-like model with
# named classes (the groups of the `emoji-groups` dataset), the ImageNet preset (1000 classes, width 1024) and
# the unconditional FFHQ preset (width 512), both at a 16 px default render size.


def other_generator(kind: str):
    import polyinr
    if kind == "emoji":
        from polyinr.training.emoji import EMOJI_GROUPS
        return polyinr.Generator(polyinr.ModelConfig(z_dim=32, w_dim=64, num_classes=len(EMOJI_GROUPS), embed_dim=16,
                                                     width=32, levels=6, img_channels=3, resolution=16),
                                 preset=None, dataset="emoji-groups", class_names=list(EMOJI_GROUPS)).eval()
    if kind == "imagenet":
        return polyinr.Generator(polyinr.get_preset("imagenet", resolution=16), preset="imagenet",
                                 dataset="imagenet").eval()
    if kind == "ffhq":                           # unconditional
        return polyinr.Generator(polyinr.get_preset("ffhq", resolution=16), preset="ffhq", dataset="ffhq").eval()
    raise ValueError(kind)


@pytest.fixture(scope="session")
def other_checkpoints(tmp_path_factory):
    """{"emoji": path, "imagenet": path, "ffhq": path, "official": path}: random-weight checkpoints of a colour
    emoji-like model, of the ImageNet preset and of the unconditional FFHQ preset (see `other_generator`), and a small file in the official release's
    pickle format (`test_official.write_release_pickle`: width 32, 3 levels, 10 classes, an 8x8 grid)."""
    from test_official import write_release_pickle

    import polyinr
    root = tmp_path_factory.mktemp("other-models")
    out = {}
    for kind in ("emoji", "imagenet", "ffhq"):
        torch.manual_seed(0)
        out[kind] = polyinr.save_checkpoint(root / f"{kind}.pt", other_generator(kind))
    write_release_pickle(root / "official.pkl")
    out["official"] = root / "official.pkl"
    return out


@pytest.fixture
def smoke(tmp_path):
    """smoke(NAME, **params): execute experiments/configs/NAME.yaml's notebook with smoke=True (and the given
    parameter overrides) into tmp_path and return (run folder, metrics dict). Fails if papermill fails or
    metrics.json / config.json are missing."""
    import json

    from polyinr.tools.experiments import run_experiment

    def run_smoke(name: str, **params):
        run = run_experiment(name, params, smoke=True, runs_root=tmp_path, progress=False)
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
        assert config["parameters"]["smoke"] is True
        assert any(run.glob("*.ipynb"))
        return run, metrics
    return run_smoke
