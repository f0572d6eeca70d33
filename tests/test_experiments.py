"""The experiments runner and the results map."""
import json
import re

import pytest

from polyinr.tools import experiments
from polyinr.tools.experiments import repo_root

ROOT = repo_root()


def test_readme_paths_exist():
    table = [line for line in (ROOT / "experiments/README.md").read_text().splitlines() if line.startswith("|")]
    text = "\n".join(table)
    paths = set(re.findall(r"`((?:notebooks|experiments)/[^`\s]+)`", text))
    paths |= {str((ROOT / "experiments" / p).resolve().relative_to(ROOT))        # markdown links, relative to experiments/
              for p in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in p}
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


def test_publish_run_copies_the_small_outputs_and_replaces_old_results(tmp_path):
    run = tmp_path / "runs" / "0003-02_train"
    (run / "samples").mkdir(parents=True)
    for name in ("02_train.ipynb", "metrics.json", "stats.jsonl", "losses.png", "generator.pt", "latest.pt",
                 "notes.txt"):
        (run / name).write_text(name)
    for name in ("reals.png", "fakes000010.png", "fakes000010_x4.png", "fakes000020.png", "fakes000020_x4.png"):
        (run / "samples" / name).write_text(name)
    params = {**experiments.load_config("02_train")["parameters"], "experiment": "02_train", "run_dir": str(run)}
    (run / "config.json").write_text(json.dumps({"parameters": params}))
    root = tmp_path / "results"
    (root / "02_train").mkdir(parents=True)
    (root / "02_train" / "stale.png").write_text("from an older run")
    (root / "01_model").mkdir()
    (root / "01_model" / "keep.json").write_text("{}")
    dest = experiments.publish_run(run, results_root=root)
    assert dest == root / "02_train"
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["02_train.ipynb", "config.json", "metrics.json", "stats.jsonl", "losses.png", "generator.pt", "samples"])
    assert sorted(p.name for p in (dest / "samples").iterdir()) == ["fakes000020.png", "fakes000020_x4.png",
                                                                     "reals.png"]
    assert (dest / "metrics.json").read_text() == "metrics.json"
    assert (root / "01_model" / "keep.json").exists()                  # other results untouched
    assert sorted(p.name for p in root.iterdir()) == ["01_model", "02_train"]   # no temporary folders left
    for bad in ("", ".", "..", "../02_train", "a/b"):
        (run / "config.json").write_text(json.dumps({"parameters": {**params, "experiment": bad}}))
        with pytest.raises(ValueError, match="name"):
            experiments.publish_run(run, results_root=root)
    (run / "config.json").write_text(json.dumps({"parameters": params}))
    with pytest.raises(FileNotFoundError, match="run_dir"):
        experiments.publish_run(tmp_path / "missing", results_root=root)
    assert (root / "02_train" / "metrics.json").exists()               # a refused publish removes nothing
    # a publish that stopped between its two renames left only ".02_train.replaced": the next one still works
    (root / "02_train").rename(root / ".02_train.replaced")
    experiments.publish_run(run, results_root=root)
    assert sorted(p.name for p in root.iterdir()) == ["01_model", "02_train"]


def test_progress_prints_lines_for_the_notebook_runner(monkeypatch, capsys):
    """Under POLYINR_PROGRESS=lines (set by the runner for the kernel) a bar is printed as whole lines
    that a console or log streams, not '\\r' refreshes or a widget."""
    from polyinr.core.progress import progress_bar
    monkeypatch.setenv("POLYINR_PROGRESS", "lines")
    monkeypatch.setenv("POLYINR_PROGRESS_SECONDS", "0")
    for _ in progress_bar(range(3), desc="work", miniters=1):
        pass
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out and len(lines) >= 3 and all(ln.startswith("work") for ln in lines)
    assert "3/3" in lines[-1]
    monkeypatch.setenv("POLYINR_PROGRESS_SECONDS", "10")       # a fast loop prints its first and last line only
    with progress_bar(total=500, desc="fast") as bar:
        for _ in range(500):
            bar.update(1)
            bar.set_postfix_str("d 0.1", refresh=False)
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_headline_metrics_are_the_top_level_numbers(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"fd": 1.23456, "n": 3, "ok": True, "table": {"a": 1}}))
    assert experiments.headline_metrics(tmp_path) == {"fd": 1.2346, "n": 3}
    assert experiments.headline_metrics(tmp_path / "missing") == {}
