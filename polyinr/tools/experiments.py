"""Reproducible notebook runs.

`experiments/configs/NAME.yaml` names a notebook and its parameters:

    notebook: notebooks/01_model.ipynb
    parameters:
      seed: 0

`python experiments/run.py NAME [-p key value ...] [--smoke] [--publish [--force-publish]]` executes
the notebook with papermill into a fresh numbered folder `experiments/runs/NNNN-NAME/` (never reused,
never executed in place) holding the executed notebook, `config.json`, `metrics.json` and figures.
A parameter the notebook does not declare is an error that lists the ones it does.

`--publish` then copies those small outputs to `experiments/results/NAME/`. Only a reference run is
published: a smoke run, or a run whose parameters differ from `NAME.yaml`, is refused before it
starts unless `--force-publish` says it is meant (the differences are then recorded in the published
config.json). A smoke run never replaces a full run's results, and the results of one experiment are
never replaced by another's.

Notebooks call `start_run` first and `finish_run` last, so a run started by hand in JupyterLab
leaves the same files.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from ..core.files import provenance, repo_root, resolve, write_json


def start_run(run_dir, parameters: dict) -> Path:
    """Create `run_dir` (relative to the repository root) and write its config.json: the
    notebook parameters plus package version, git commit and machine."""
    run_dir = resolve(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    cfg.setdefault("parameters", {}).update(parameters)
    cfg["provenance"] = provenance()
    write_json(cfg_path, cfg)
    return run_dir


def finish_run(run_dir, metrics: dict) -> Path:
    """Write metrics.json (what the tests and the results tables read)."""
    return write_json(resolve(run_dir) / "metrics.json", metrics)


def save_figure(fig, run_dir, name: str) -> Path:
    path = resolve(run_dir) / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def load_config(name: str) -> dict:
    path = resolve("experiments/configs") / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in resolve("experiments/configs").glob("*.yaml"))
        raise ValueError(f"experiment {name!r}: no file {path}; known experiments: {known}")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict) or "notebook" not in cfg:
        raise ValueError(f"{path}: expected a mapping with 'notebook' and 'parameters'")
    if not resolve(cfg["notebook"]).is_file():
        raise ValueError(f"{path}: notebook {cfg['notebook']!r} does not exist")
    cfg.setdefault("parameters", {})
    return cfg


def new_run_dir(name: str, runs_root=None) -> Path:
    """experiments/runs/NNNN-NAME, numbered after every existing run; created exclusively so two
    runs never share a folder."""
    root = resolve(runs_root or "experiments/runs")
    root.mkdir(parents=True, exist_ok=True)
    while True:
        nums = [int(p.name[:4]) for p in root.iterdir() if p.name[:4].isdigit()]
        path = root / f"{max(nums, default=0) + 1:04d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _parse_value(text: str):
    """`-p key value`: YAML scalars, so 3 -> int, 0.5 -> float, true -> bool, abc -> str."""
    return yaml.safe_load(text)


def notebook_parameters(notebook) -> list[str]:
    """The names a notebook's `parameters` cell declares (papermill's own reading of the cell)."""
    import papermill as pm
    return list(pm.inspect_notebook(str(notebook)))


def check_parameters(name: str, cfg: dict, overrides: dict) -> None:
    """Every parameter of experiments/configs/NAME.yaml and of `overrides` must be declared by the
    notebook; otherwise a ValueError that lists the known ones."""
    known = notebook_parameters(resolve(cfg["notebook"]))
    for where, keys in ((f"experiments/configs/{name}.yaml", cfg["parameters"]), ("-p", overrides)):
        unknown = sorted(set(keys) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown parameter(s) {unknown} of {cfg['notebook']}; "
                             f"known: {sorted(known)}")


_UNSET = "<not set>"
_RUN_KEYS = ("run_dir", "notebook", "experiment", "smoke")   # set by the runner, not by the config


def reference_differences(name: str, parameters: dict) -> list[str]:
    """How notebook `parameters` differ from experiments/configs/NAME.yaml ([] for a reference run)."""
    expected = load_config(name)["parameters"]
    out = ["smoke=True (a smoke run)"] if parameters.get("smoke") else []
    for k in sorted((set(expected) | set(parameters.get("overrides", {}))) - set(_RUN_KEYS)):
        got, want = parameters.get(k, _UNSET), expected.get(k, _UNSET)
        if got != want:
            out.append(f"{k}={got!r} (the config has {want!r})")
    return out


def run_experiment(name: str, overrides: dict | None = None, smoke: bool = False, runs_root=None,
                   publish: bool = False, progress: bool = True, force_publish: bool = False) -> Path:
    import papermill as pm  # lazy: a second of imports that notebooks calling start_run do not need
    cfg = load_config(name)
    overrides = dict(overrides or {})
    check_parameters(name, cfg, overrides)
    params = dict(cfg["parameters"])
    params.update(overrides)
    if smoke:
        params["smoke"] = True
    if publish:   # refuse before hours of work, not after
        _check_publishable(name, {**params, "overrides": overrides}, force_publish, results_root=None)
    run_dir = new_run_dir(name, runs_root)
    root = repo_root()
    try:
        params["run_dir"] = str(run_dir.relative_to(root))
    except ValueError:
        params["run_dir"] = str(run_dir)
    notebook = resolve(cfg["notebook"])
    start_run(run_dir, {**params, "notebook": str(notebook.relative_to(root)), "experiment": name,
                        "overrides": overrides})
    if progress:
        print(f"{name}: executing {notebook.relative_to(root)} into {run_dir}", flush=True)
    # With progress, the kernel's printed output streams here as it runs, and long loops print plain
    # progress lines (POLYINR_PROGRESS=lines, inherited by the kernel) instead of notebook widgets.
    env = {"POLYINR_PROGRESS": "lines"} if progress else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(notebook), str(run_dir / notebook.name), parameters=params, cwd=str(root),
                            kernel_name="python3", progress_bar=False, log_output=False,
                            stdout_file=sys.stdout if progress else None, stderr_file=sys.stderr if progress else None)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if publish:
        publish_run(run_dir, force=force_publish)
    return run_dir


def _check_publishable(name: str, parameters: dict, force: bool, results_root) -> list[str]:
    """The reasons a run is not a reference run of `name`; a ValueError unless `force`. Never
    allowed: a smoke run over a full run's results, or over another experiment's results."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"name: expected a plain folder name such as '02_train', got {name!r}")
    diffs = reference_differences(name, parameters)
    if diffs and not force:
        raise ValueError(f"publish: the run is not the reference run of {name!r}: {'; '.join(diffs)}. "
                         f"Run without -p / --smoke, or pass --force-publish (force=True) to publish it anyway")
    dest_cfg = resolve(results_root or "experiments/results") / name / "config.json"
    old = json.loads(dest_cfg.read_text()).get("parameters", {}) if dest_cfg.is_file() else None
    if old is not None and old.get("experiment", name) != name:
        raise ValueError(f"publish: {dest_cfg.parent} holds results of experiment {old['experiment']!r}, "
                         f"not {name!r}; they are never replaced by another experiment's run")
    if old is not None and parameters.get("smoke") and not old.get("smoke"):
        raise ValueError(f"publish: {dest_cfg.parent} holds a full run's results; a smoke run never replaces them")
    return diffs


def publish_run(run_dir, results_root=None, force: bool = False) -> Path:
    """Copy a run's small outputs (executed notebook, json, png, generator.pt, the last sample grids) to
    <results_root>/<experiment>/ (default experiments/results/<experiment>/), replacing what was there.
    The run must be a reference run of its experiment (its config.json's parameters equal
    experiments/configs/<experiment>.yaml, not a smoke run) unless `force`; see `_check_publishable`.
    The copy is assembled in a temporary folder beside it and swapped in by renames, so a failed
    copy leaves the previous results in place."""
    run_dir = resolve(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir: folder {str(run_dir)!r} does not exist")
    cfg_path = run_dir / "config.json"
    params = json.loads(cfg_path.read_text()).get("parameters", {}) if cfg_path.is_file() else {}
    if "experiment" not in params:
        raise ValueError(f"run_dir: {str(run_dir)!r} is not an experiment run (its config.json names no experiment); "
                         f"run it with `python experiments/run.py NAME --publish`")
    name = params["experiment"]
    diffs = _check_publishable(name, params, force, results_root)
    root = resolve(results_root or "experiments/results")
    root.mkdir(parents=True, exist_ok=True)
    dest = root / name
    tmp = root / f".{name}.publishing"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for p in sorted(run_dir.iterdir()):
        if p.suffix in {".ipynb", ".json", ".png", ".jsonl"} or p.name == "generator.pt":
            shutil.copy2(p, tmp / p.name)
    samples = run_dir / "samples"
    if samples.is_dir():  # the final sample grids of a training run (not every tick's)
        grids = sorted(p for p in samples.glob("fakes*.png") if "_x4" not in p.name)
        keep = [samples / "reals.png"] + ([grids[-1], grids[-1].with_name(grids[-1].stem + "_x4.png")] if grids else [])
        (tmp / "samples").mkdir()
        for p in keep:
            if p.is_file():
                shutil.copy2(p, tmp / "samples" / p.name)
    old = root / f".{name}.replaced"
    if old.exists():   # left by a publish that stopped between its renames
        if dest.exists():
            shutil.rmtree(old)
        else:
            old.rename(dest)
    if diffs:   # a forced publish says so in the published config.json
        published = json.loads((tmp / "config.json").read_text())
        published["published_with_differences"] = diffs
        write_json(tmp / "config.json", published)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python experiments/run.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="experiment name: a file experiments/configs/NAME.yaml")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="override one notebook parameter (value parsed as YAML)")
    ap.add_argument("--smoke", action="store_true", help="set smoke=True (tiny sizes, for tests)")
    ap.add_argument("--runs-root", default=None, help="folder for run folders (default experiments/runs)")
    ap.add_argument("--publish", action="store_true", help="copy the outputs to experiments/results/NAME/ "
                    "(a reference run only: no -p that changes the config, no --smoke)")
    ap.add_argument("--force-publish", action="store_true",
                    help="with --publish: publish even a run that differs from the config (recorded as such)")
    args = ap.parse_args(argv)
    if args.force_publish and not args.publish:
        ap.error("--force-publish: only meaningful with --publish")
    overrides = {k: _parse_value(v) for k, v in args.param}
    run_dir = run_experiment(args.name, overrides, smoke=args.smoke, runs_root=args.runs_root, publish=args.publish,
                             force_publish=args.force_publish)
    print(f"run folder: {run_dir}")
    for key, value in headline_metrics(run_dir).items():
        print(f"  {key}: {value}")
    return 0


def headline_metrics(run_dir, limit: int = 12) -> dict:
    """The top-level numbers of a run's metrics.json (at most `limit`), for the end of a run."""
    path = resolve(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in list(numbers.items())[:limit]}
