"""Bad input and faults: each gets an error that names the argument or file, and nothing on disk is lost.

Command lines are driven as subprocesses where the command line is the interface (exit status 2 and one
`error: ...` line, as argparse does), the rest through the public API."""
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import polyinr
from polyinr.core.config import get_train_preset
from polyinr.evaluation.protocols import evaluate
from polyinr.studies import analysis
from polyinr.tools import experiments
from polyinr.tools.experiments import repo_root
from polyinr.training import data
from polyinr.training import loop as T

ROOT = repo_root()
TINY = dict(g_overrides={"width": 16, "levels": 3}, resolution=8, batch=4, kimg=0.016, tick_kimg=0.008,
            d_width=8, d_max_width=16, precision="fp32", grid_rows=1)


def snapshot(path: Path) -> dict:
    """Every file under `path` (or the file itself) -> SHA-256: what 'nothing changed' compares."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "POLYINR_TRACEBACK": "0"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """A command line refused its input: status 2, one `error:` line naming what was wrong."""
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert err and err[-1].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in err[-1], (needle, err[-1])
    return err[-1]


# --------------------------------------------------------------------------------- publishing


def test_publish_refuses_a_smoke_run_before_running_and_keeps_the_reference_results(tmp_path):
    results = ROOT / "experiments" / "results" / "01_model"
    before = snapshot(results)
    proc = cli("experiments/run.py", "01_model", "--smoke", "--publish", "--runs-root", str(tmp_path))
    refused(proc, "not the reference run of '01_model'", "smoke=True", "--force-publish")
    assert snapshot(results) == before and not list(tmp_path.iterdir())      # nothing ran, nothing replaced


def test_publish_refuses_changed_parameters_and_unknown_ones(tmp_path):
    results = ROOT / "experiments" / "results" / "01_model"
    before = snapshot(results)
    proc = cli("experiments/run.py", "01_model", "-p", "preview_size", "32", "--publish", "--runs-root", str(tmp_path))
    refused(proc, "preview_size=32 (the config has 128)")
    proc = cli("experiments/run.py", "01_model", "-p", "nosuch_param", "3", "--runs-root", str(tmp_path))
    refused(proc, "-p: unknown parameter(s) ['nosuch_param'] of notebooks/01_model.ipynb",
            "known: ['preview_size', 'run_dir', 'seed', 'smoke']")
    assert snapshot(results) == before and not list(tmp_path.iterdir())


def fake_run(path: Path, experiment: str, **params) -> Path:
    """A finished run folder of `experiment` with the config's parameters updated by `params`."""
    path.mkdir(parents=True)
    cfg = {**experiments.load_config(experiment)["parameters"], "experiment": experiment, **params}
    (path / "config.json").write_text(json.dumps({"parameters": cfg}))
    (path / "metrics.json").write_text(json.dumps({"marker": str(path)}))
    return path


def test_publish_never_replaces_results_with_a_run_of_another_kind(tmp_path):
    root = tmp_path / "results"
    experiments.publish_run(fake_run(tmp_path / "full", "01_model"), results_root=root)
    before = snapshot(root)
    smoke = fake_run(tmp_path / "smoke", "01_model", smoke=True)
    with pytest.raises(ValueError, match="smoke=True"):
        experiments.publish_run(smoke, results_root=root)
    with pytest.raises(ValueError, match="a smoke run never replaces them"):         # not even when forced
        experiments.publish_run(smoke, results_root=root, force=True)
    other = fake_run(tmp_path / "other", "05_extrapolation")
    (root / "05_extrapolation").mkdir()
    (root / "05_extrapolation" / "config.json").write_text(json.dumps({"parameters": {"experiment": "01_model"}}))
    before_other = snapshot(root)
    with pytest.raises(ValueError, match="holds results of experiment '01_model', not '05_extrapolation'"):
        experiments.publish_run(other, results_root=root, force=True)
    assert snapshot(root) == before_other and {k: v for k, v in before_other.items() if k in before} == before
    unnamed = tmp_path / "by_hand"
    unnamed.mkdir()
    (unnamed / "config.json").write_text(json.dumps({"parameters": {"seed": 0}}))
    with pytest.raises(ValueError, match="not an experiment run"):
        experiments.publish_run(unnamed, results_root=root)


def test_forced_publish_of_a_variant_records_its_differences(tmp_path):
    root = tmp_path / "results"
    variant = fake_run(tmp_path / "variant", "01_model", seed=3, overrides={"seed": 3})
    with pytest.raises(ValueError, match=r"seed=3 \(the config has 0\)"):
        experiments.publish_run(variant, results_root=root)
    assert not root.exists()
    dest = experiments.publish_run(variant, results_root=root, force=True)
    assert json.loads((dest / "config.json").read_text())["published_with_differences"] == ["seed=3 (the config has 0)"]


# --------------------------------------------------------------------------------- run folders


def test_training_into_a_finished_run_is_refused_and_overwrite_moves_it_aside(tmp_path):
    run = tmp_path / "run"
    T.train(get_train_preset("letters", **TINY), run, progress=False)
    before = snapshot(run)
    args = ["-m", "polyinr.train", "--run-dir", str(run), "--kimg", "0.008", "--resolution", "8",
            "--set", "g_overrides", "{width: 16, levels: 3}", "--no-progress"]
    refused(cli(*args), f"run_dir: '{run}' already holds a training run (latest.pt, generator.pt, stats.jsonl, "
            "samples/fakes*.png)", f"--resume {run}", "--overwrite")
    assert snapshot(run) == before
    with pytest.raises(FileExistsError, match="already holds a training run"):        # the API, as the CLI
        T.train(get_train_preset("letters", **TINY), run, progress=False)
    other = tmp_path / "other.pt"
    other.write_bytes((run / "latest.pt").read_bytes())
    with pytest.raises(FileExistsError, match="already holds a training run"):        # a stage from elsewhere too
        T.train(get_train_preset("letters", **TINY), run, resume=other, progress=False)
    assert snapshot(run) == before
    T.train(get_train_preset("letters", **{**TINY, "kimg": 0.008}), run, progress=False, overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1
    assert snapshot(aside[0]) == {k.replace("run/", aside[0].name + "/", 1): v for k, v in before.items()}
    assert sorted(p.name for p in (run / "samples").iterdir()) == [   # only the new run's grids, nothing mixed
        "fakes000000.008.png", "fakes000000.008_x4.png", "reals.png"]
    T.train(get_train_preset("letters", **TINY), run, resume=run, progress=False)    # resuming is what it is for
    assert len(T.read_stats(run)) == 2


def test_a_run_that_fails_at_start_leaves_nothing(tmp_path, monkeypatch):
    def boom(run):
        raise RuntimeError("first step failed")
    monkeypatch.setattr(T, "train_step", boom)
    with pytest.raises(RuntimeError, match="first step failed"):
        T.train(get_train_preset("letters", **TINY), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    (tmp_path / "nb").mkdir()                                      # a notebook's folder keeps what it had
    (tmp_path / "nb" / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="first step failed"):
        T.train(get_train_preset("letters", **TINY), tmp_path / "nb", progress=False)
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["config.json"]


def test_prepare_refuses_to_overwrite_its_destination(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(src / "a.png")
    dest = tmp_path / "out.zip"
    dest.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"dest: '.*out\.zip' already exists.*--overwrite"):
        data.prepare(src, dest, 8)
    refused(cli("-m", "polyinr.data", "prepare", "--source", str(src), "--dest", str(dest), "--resolution", "8"),
            "already exists", "--overwrite")
    assert dest.read_bytes() == b"precious"
    data.prepare(src, dest, 8, overwrite=True)
    assert zipfile.is_zipfile(dest)


# --------------------------------------------------------------------------------- labels


def labelled_folder(root: Path, labels: list[int], **meta) -> Path:
    root.mkdir()
    for i in range(len(labels)):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    (root / "dataset.json").write_text(json.dumps({"labels": [[f"{i}.png", c] for i, c in enumerate(labels)], **meta}))
    return root


def test_an_absurd_class_id_fails_at_once(tmp_path):
    root = labelled_folder(tmp_path / "d", [0, 10**9])
    with pytest.raises(ValueError, match=r"dataset.json in .*class id 1000000000 is beyond the 100,000 classes"):
        data.image_folder(root)
    with pytest.raises(ValueError, match="num_classes must be an integer in"):
        data.image_folder(labelled_folder(tmp_path / "e", [0, 1], num_classes=10**9))
    with pytest.raises(ValueError, match="labels: class id 1000000000 is beyond"):     # in-memory datasets too
        data.ImageDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 10**9]))


def test_class_ids_with_gaps_need_a_declared_count(tmp_path):
    root = labelled_folder(tmp_path / "d", [0, 999, 0])
    with pytest.raises(ValueError, match=r"class ids must be 0\.\.1 \(2 distinct labels\), but the largest is 999 "
                                         r"and 998 ids below it have no image \(e\.g\. \[1, 2, 3, 4, 5\]\); renumber"):
        data.image_folder(root)
    refused(cli("-m", "polyinr.train", "--run-dir", str(tmp_path / "run"), "--dataset", str(root)),
            "renumber the labels 0..1", "num_classes=1000")
    assert not (tmp_path / "run").exists()
    declared = labelled_folder(tmp_path / "e", [0, 999, 0], num_classes=1000)
    with pytest.warns(UserWarning, match=r"998 of 1000 classes have no image: \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] "
                                         r"and 988 more"):
        ds = data.image_folder(declared)
    assert ds.num_classes == 1000 and ds.labels.tolist() == [0, 999, 0]
    with pytest.raises(ValueError, match="class id 999 is out of range for num_classes=10"):
        data.image_folder(labelled_folder(tmp_path / "f", [0, 999], num_classes=10))
    named = data.image_folder(labelled_folder(tmp_path / "g", [1, 0], class_names=["cat", "dog"]))
    assert named.class_names == ["cat", "dog"]
    with pytest.raises(ValueError, match='"num_classes" is 3 but "class_names" has 2 names'):
        data.image_folder(labelled_folder(tmp_path / "h", [1, 0], class_names=["cat", "dog"], num_classes=3))


# --------------------------------------------------------------------------------- shapes and values


@pytest.fixture(scope="module")
def G():
    return polyinr.build_generator("letters", width=16, levels=3).eval()


def test_zero_sizes_and_batches_are_named_errors(G):
    z, c = torch.randn(2, 32), torch.tensor([0, 1])
    ws = G.mapping(z, c)
    cases = [
        (lambda: polyinr.render_coords(G, ws, torch.zeros(0, 2)), r"coords: expected at least one coordinate, got \[0, 2\]"),
        (lambda: G(z, c, height=0), "height: expected a positive integer, got 0"),
        (lambda: G(z, c, height=8, width=0), "width: expected a positive integer, got 0"),
        (lambda: polyinr.render(G, ws, 0, 8), "height: expected a positive integer, got 0"),
        (lambda: polyinr.synthesize(G, ws, 8, 0), "width: expected a positive integer, got 0"),
        (lambda: analysis.extrapolate(G, ws, 0, 2), "height: expected a positive integer, got 0"),
        (lambda: polyinr.render(G, ws[:0], 8, 8), r"ws: expected at least one latent, got batch 0"),
        (lambda: G(z[:0], c[:0]), r"z: expected at least one latent, got batch 0"),
        (lambda: polyinr.render(G, ws, 8, 8, chunk_pixels=0), "chunk_pixels: expected a positive integer, got 0"),
    ]
    for fn, message in cases:
        with pytest.raises(ValueError, match=message):
            fn()


@pytest.mark.parametrize("psi", [float("nan"), float("inf"), "0.7", None, True])
def test_psi_must_be_a_finite_number(G, psi):
    with pytest.raises(ValueError, match="psi: expected a finite number"):
        G(torch.randn(2, 32), torch.tensor([0, 1]), psi=psi)


def test_evaluation_checks_its_arguments_before_loading_anything(tmp_path):
    missing = tmp_path / "missing.pt"            # the checks come first: the file is never opened
    for kw, message in [({"psi": float("nan")}, "psi: expected a finite number"),
                        ({"num": 0}, "num: expected a positive integer, got 0"),
                        ({"resolution": 0}, "resolution: expected a positive integer, got 0"),
                        ({"batch": 0}, "batch: expected a positive integer, got 0")]:
        with pytest.raises(ValueError, match=message):
            evaluate(missing, **kw)
    refused(cli("-m", "polyinr.metrics", "--network", str(missing), "--psi", "nan"), "psi: expected a finite number")


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"is a folder, expected a checkpoint file$"):
        polyinr.load_generator(tmp_path)
    (tmp_path / "generator.pt").write_bytes(b"")
    with pytest.raises(IsADirectoryError, match=r"it holds generator\.pt: pass '.*generator\.pt'"):
        polyinr.load_generator(tmp_path)


def test_ticks_shorter_than_a_kimg_write_one_grid_each(tmp_path):
    run = T.train(get_train_preset("letters", **{**TINY, "kimg": 0.012, "tick_kimg": 0.004}), tmp_path / "r",
                  progress=False)
    grids = sorted(p.name for p in (run / "samples").glob("fakes*.png") if "_x4" not in p.name)
    assert grids == ["fakes000000.004.png", "fakes000000.008.png", "fakes000000.012.png"]
    assert [T.grid_name(n) for n in (0, 70_000, 70_500)] == ["fakes000000", "fakes000070", "fakes000070.500"]
