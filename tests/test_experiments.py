"""The experiments runner and the results map."""
import json
import re

import pytest

from polyinr import experiments
from polyinr.experiments import repo_root

ROOT = repo_root()


def test_readme_paths_exist():
    table = [line for line in (ROOT / "experiments/README.md").read_text().splitlines() if line.startswith("|")]
    paths = set(re.findall(r"`((?:notebooks|experiments)/[^`\s]+)`", "\n".join(table)))
    assert paths, "experiments/README.md names no paths"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def test_run_dirs_are_numbered_and_never_reused(tmp_path):
    a = experiments.new_run_dir("x", tmp_path)
    b = experiments.new_run_dir("x", tmp_path)
    (tmp_path / "0007-y").mkdir()
    c = experiments.new_run_dir("x", tmp_path)
    assert [a.name, b.name, c.name] == ["0001-x", "0002-x", "0008-x"]


def test_unknown_experiment():
    with pytest.raises(ValueError, match="known experiments"):
        experiments.load_config("no_such_experiment")


def test_start_and_finish_run_write_provenance(tmp_path):
    run = experiments.start_run(tmp_path / "r", {"seed": 3})
    experiments.finish_run(run, {"x": 1.5})
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["parameters"] == {"seed": 3}
    import subprocess

    import torch

    import polyinr
    prov = cfg["provenance"]
    assert prov["polyinr_version"] == polyinr.__version__ and prov["torch"] == torch.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", prov["git_commit"]) and prov["git_commit"].startswith(head)
    assert json.loads((run / "metrics.json").read_text()) == {"x": 1.5}
