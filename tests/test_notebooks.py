"""Every notebook runs end to end under papermill with smoke=True and writes metrics.json."""
import json
from pathlib import Path

import pytest

from polyinr.tools.experiments import repo_root

ROOT = repo_root()
CONFIGS = sorted(p.stem for p in (ROOT / "experiments/configs").glob("*.yaml"))


def test_every_notebook_has_a_config():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    import yaml
    configured = {Path(yaml.safe_load((ROOT / f"experiments/configs/{c}.yaml").read_text())["notebook"]).stem
                  for c in CONFIGS}
    assert set(notebooks) <= configured, set(notebooks) - configured


def _check(name, tmp_path):
    from conftest import run_notebook_smoke
    return run_notebook_smoke(name, tmp_path)


def test_01_model(tmp_path):
    run, m = _check("01_model", tmp_path)
    assert m["params"]["imagenet"] == 45_869_695 and m["params"]["ffhq"] == 13_198_399
    assert m["stylegan_special_case_max_abs_diff"] < 1e-4
    assert {int(k): v for k, v in m["degree_by_levels"].items()} == {L: L for L in range(1, 5)}
    assert {int(k): v for k, v in m["degree_with_one_flat_level"].items()} == {L: L - 1 for L in range(2, 5)}
    assert (run / "degree_growth.png").stat().st_size > 1000 and (run / "any_grid.png").is_file()


def test_notebooks_are_committed_clean():
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and not c.get("execution_count") for c in code), nb.name
        tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert tagged == [1], f"{nb.name}: the second code cell must be the only one tagged 'parameters'"
        src = "".join(code[1]["source"])
        for name in ("seed", "run_dir", "smoke"):
            assert f"\n{name}:" in "\n" + src, f"{nb.name}: parameters cell lacks {name}"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parameters_exist_in_notebook(name):
    import yaml
    cfg = yaml.safe_load((ROOT / f"experiments/configs/{name}.yaml").read_text())
    cells = json.loads((ROOT / cfg["notebook"]).read_text())["cells"]
    src = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    declared = {line.split(":")[0].strip() for line in src.splitlines() if ":" in line}
    assert set(cfg["parameters"]) <= declared, set(cfg["parameters"]) - declared


def test_02_train(tmp_path):
    run, m = _check("02_train", tmp_path)
    assert m["kimg"] == pytest.approx(0.064)    # the smoke run's length: 8 steps of batch 8
    assert 0.0 <= m["class_consistency"] <= 1.0 and m["class_consistency_samples"] == 2 * 26
    hits = m["class_consistency"] * 52                  # a share of 52 samples: a whole number of them
    assert abs(hits - round(hits)) < 1e-9
    assert 0.5 < m["classifier_heldout_accuracy"] <= 1.0
    import polyinr
    G = polyinr.load_generator(run / "generator.pt")
    assert G.cfg.levels == 4 and m["params"] == polyinr.count_parameters(G)
    assert (run / "losses.png").is_file() and (run / "reals.png").is_file()


def test_parameters_cells_parse_cleanly():
    """papermill reads each parameter's type and help from the parameters cell (e.g. for --help-notebook)."""
    import papermill as pm
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        params = pm.inspect_notebook(str(nb))
        code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        declared = [ln for ln in "".join(code[1]["source"]).splitlines() if ln.strip() and not ln.startswith("#")]
        assert len(params) == len(declared), (nb.name, sorted(params))
        assert all(p["help"] and p["inferred_type_name"] != "None" for p in params.values()), nb.name
