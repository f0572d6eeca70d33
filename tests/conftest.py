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


@pytest.fixture
def smoke(tmp_path):
    """smoke(NAME): execute experiments/configs/NAME.yaml's notebook with smoke=True into tmp_path and
    return (run folder, metrics dict). Fails if papermill fails or metrics.json / config.json are missing."""
    import json

    from polyinr.tools.experiments import run_experiment

    def run_smoke(name: str):
        run = run_experiment(name, smoke=True, runs_root=tmp_path, progress=False)
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
        assert config["parameters"]["smoke"] is True
        assert any(run.glob("*.ipynb"))
        return run, metrics
    return run_smoke
