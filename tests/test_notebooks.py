"""Every notebook runs end to end under papermill with smoke=True and writes metrics.json; the tests
below check what each one measured (the `smoke` fixture runs one, see conftest.py)."""
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import polyinr
from polyinr.evaluation import protocols as E
from polyinr.studies import analysis as an
from polyinr.studies import inr
from polyinr.tools.experiments import repo_root, resolve
from polyinr.training import loop as T

ROOT = repo_root()
CONFIGS = sorted(p.stem for p in (ROOT / "experiments/configs").glob("*.yaml"))


def test_every_notebook_has_a_config():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    import yaml
    configured = {Path(yaml.safe_load((ROOT / f"experiments/configs/{c}.yaml").read_text())["notebook"]).stem
                  for c in CONFIGS}
    assert set(notebooks) <= configured, set(notebooks) - configured


def test_01_model(smoke):
    run, m = smoke("01_model")
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


def test_02_train(smoke):
    run, m = smoke("02_train")
    assert m["kimg"] == pytest.approx(0.064)    # the smoke run's length: 8 steps of batch 8
    assert 0.0 <= m["class_consistency"] <= 1.0 and m["class_consistency_samples"] == 2 * 26
    hits = m["class_consistency"] * 52                  # a share of 52 samples: a whole number of them
    assert abs(hits - round(hits)) < 1e-9
    assert 0.5 < m["classifier_heldout_accuracy"] <= 1.0
    G = polyinr.load_generator(run / "generator.pt")
    assert G.cfg.levels == 4 and m["params"] == polyinr.count_parameters(G)
    assert (run / "losses.png").is_file() and (run / "reals.png").is_file() and (run / "diversity.png").is_file()
    assert m["eval_num"] == 16 and 0 <= m["precision_letters"] <= 1 and 0 <= m["recall_letters"] <= 1
    assert math.isfinite(m["fd_letters"]) and m["fd_letters"] >= 0
    scored = [s for s in T.read_stats(run) if "fd_letters" in s]        # eval_ticks=1: every tick is scored
    assert len(scored) == 2 and all(s["eval_seconds"] > 0 and 0 <= s["recall_letters"] <= 1 for s in scored)


def test_parameters_cells_parse_cleanly():
    """papermill reads each parameter's type and help from the parameters cell (e.g. for --help-notebook)."""
    import papermill as pm
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        params = pm.inspect_notebook(str(nb))
        code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        declared = [ln for ln in "".join(code[1]["source"]).splitlines() if ln.strip() and not ln.startswith("#")]
        assert len(params) == len(declared), (nb.name, sorted(params))
        assert all(p["help"] and p["inferred_type_name"] != "None" for p in params.values()), nb.name


def test_00_taylor_series(smoke):
    run, m = smoke("00_taylor_series")
    names = set(inr.MODEL_NAMES)
    assert set(m["psnr_camera32"]) == names and set(m["params"]) == names
    assert all(abs(n - 20_000) <= 1_000 for n in m["params"].values())
    assert all(math.isfinite(v) for v in m["psnr_camera32"].values())
    # the ReLU MLP is piecewise linear: exactly zero curvature; Poly-INR has curvature everywhere
    assert m["hessian_zero_fraction"]["relu"] == 1.0 and m["hessian_rms"]["relu"] == 0.0
    assert m["hessian_zero_fraction"]["polyinr"] == 0.0 and m["hessian_zero_fraction"]["polyinr_pure"] == 0.0
    assert m["chirp_second_derivative_zero_fraction"]["relu"] == 1.0
    assert m["chirp_second_derivative_rms"]["polyinr_pure"] > 0
    deg = m["degree"]
    assert {int(k): v for k, v in deg["fitted_degree_per_level"].items() if k != "output"} == {1: 1, 2: 2, 3: 3, 4: 4}
    assert deg["fitted_degree_per_level"]["output"] == 4 and deg["finite_difference_degree"] == 4
    assert deg["released_fitted_degree_per_level"]["output"] > 4
    err = [m["taylor_max_error"][k] for k in sorted(m["taylor_max_error"], key=int)]
    assert err[-1] < 1e-6 < err[0]
    g = m["generalization"]
    assert g["published"]["natural"]["ff"] == 25.57 and g["published"]["text"]["relu"] == 18.40
    assert set(g["natural"]) == set(g["text"]) == names | {"basic"} and "differ" in g["note"]
    assert all(math.isfinite(r["heldout"]) and math.isfinite(r["full"]) for r in g["text"].values())
    assert set(m["target"]) == {"polyinr", "polyinr_pure"}
    for name, c in m["target"].items():        # the check is computed from the table it reports
        fin = m["psnr_camera32"]
        assert c["minus_relu_db"] == pytest.approx(fin[name] - fin["relu"])
        assert c["minus_best_encoding_db"] == pytest.approx(fin[name] - max(fin["pe"], fin["ff"], fin["siren"]))
    # the smaller fits of every image, and the reduced generalisation settings, are recorded
    assert all(set(m[f"psnr_{img}24"]) == names for img in ("camera", "astronaut", "grace_hopper", "letter"))
    assert (g["size"], g["steps"], g["train_grid"]) == (32, 4, 16) and g["published_protocol"]["size"] == 512
    # the full-protocol estimate scales the measured step times to 512² pixels and 2000 steps
    assert g["estimated_full_protocol_hours"] == pytest.approx(
        sum(g["seconds_per_step"].values()) * (512 / 32) ** 2 * 2000 / 3600)
    assert "-p gen_size 512 -p gen_steps 2000" in g["full_protocol_command"]
    for kind in ("natural", "text"):            # the read-out is computed from the table it reads
        for n, r in g[kind].items():
            assert g["train_minus_heldout"][kind][n] == pytest.approx(r["train"] - r["heldout"])
        assert set(g["heldout_minus_published"][kind]) == set(g["published"][kind]) & set(g[kind])
        assert g["heldout_minus_published"][kind]["relu"] == pytest.approx(
            g[kind]["relu"]["heldout"] - g["published"][kind]["relu"])
    assert not g["full_protocol"] and set(g["threads"]) == {f"{k}/{n}" for k in ("natural", "text") for n in names | {"basic"}}
    assert len(list((run / "generalization_fits").glob("*.json"))) == 14   # the per-fit cache, no states left
    assert not list((run / "generalization_fits").glob("*.pt"))
    assert len(m["polyinr_ablation"]["variants"]) == 6
    assert all(math.isfinite(v["psnr"]) for v in m["polyinr_ablation"]["variants"].values())
    pb = m["polynomial_bound"]             # the best-polynomial bound rises with the degree
    vals = [pb["psnr_by_degree"][k] for k in sorted(pb["psnr_by_degree"], key=int)]
    assert vals == sorted(vals) and pb["image"] == "camera32" and set(pb["degree_to_match"]) == names
    for f in ("taylor", "chirp", "degree_growth", "psnr_curves", "reconstructions", "letter_row", "generalization",
              "polynomial_bound"):
        assert (run / f"{f}.png").stat().st_size > 1000, f


def test_03_fid_notebook(smoke):
    run, m = smoke("03_fid")
    required = ["fd_letters", "fd_letters_real_floor", "precision_letters", "recall_letters"] + \
        [f"fd_letters_{w}_x{k}" for k in (2, 4, 8) for w in ("grid", "bicubic", "real_floor")]
    for key in required:
        assert math.isfinite(m[key]) and m[key] >= -1e-9 if key.startswith("fd") else 0 <= m[key] <= 1, key
    p = m["protocol"]["letters"]
    assert (p["num"], p["num_hires"], p["floor"]["num"], p["floor"]["num_hires"]) == (16, 8, 16, 8)
    assert p["checkpoint_sha256"] == hashlib.sha256(resolve(E.DEFAULT_CHECKPOINT).read_bytes()).hexdigest()
    assert m["protocol"]["inception"]["extractor"] == "polyinr-tiny"
    assert all(math.isfinite(m[k]) for k in ("fid", "kid", "is", "precision", "recall", "sfid"))
    for k in (2, 4, 8):                                   # the verdict the notebook prints is bicubic - grid
        assert m[f"fd_letters_grid_gain_x{k}"] == pytest.approx(m[f"fd_letters_bicubic_x{k}"] - m[f"fd_letters_grid_x{k}"])
    assert p["classifiers"] == {}                          # smoke: random CNNs, no trained classifier to record
    assert (run / "hires_fd.png").stat().st_size > 1000 and (run / "hires_samples.png").stat().st_size > 1000


def test_04_heatmaps_notebook(smoke):
    run, m = smoke("04_heatmaps")
    assert m["groups"] == {"coarse": [0, 1, 2, 3], "middle": [4, 5, 6], "fine": [7, 8, 9]}
    per = m["sensitivity_per_level"]["same_class"]
    assert len(per["pixel_change"]) == 10 and all(v > 0 for v in per["pixel_change"])
    assert all(0 <= v <= 1 + 1e-6 for v in per["coarse_share"])
    assert math.isclose(sum(m["pixel_change_share_per_group"].values()), 1.0, rel_tol=1e-5)
    assert all(-1 <= v <= 1 for v in m["ink_correlation"]["features_l2"])
    assert m["sensitivity_all_levels"]["other_class"]["label_alt"] == 1.0   # every level from B is B's render
    one, per_level = m["resample_one_level_per_group"], m["sensitivity_per_level"]["same_class"]["pixel_change"]
    assert math.isclose(one["middle"]["pixel_change"], sum(per_level[4:7]) / 3, rel_tol=1e-6)
    assert m["reading"] == an.read_level_groups(m["sensitivity_per_group"]["other_class"])
    assert set(m["reading"]) == {"coarse", "middle", "fine"}
    for name in ("heatmaps_features_mean", "heatmaps_features_l2", "heatmaps_affine_l2", "level_sensitivity"):
        assert (run / f"{name}.png").stat().st_size > 1000


def test_05_extrapolation_notebook(smoke):
    run, m = smoke("05_extrapolation")
    assert m["in_frame_max_abs_diff"] <= 2.5e-7 and m["in_frame_max_abs_diff_dense"] <= 2.5e-7
    assert m["margin_pixels"] == 4 and math.isclose(m["extent"][0], -4 / 15)
    assert m["margin_pixels_dense"] == an.margin_pixels(m["dense_size"], 0.25)
    assert m["boundary_step_ratio"] > 0 and 0 <= m["ink_ring"] <= 1
    assert list(m["zoom_out"]) == ["0", "4", "8"]
    assert (run / "extrapolation.png").is_file() and (run / "zoom_out.png").is_file()


def test_06_high_resolution_notebook(smoke):
    run, m = smoke("06_high_resolution")
    assert m["factors"] == [1, 2]
    for name in ("bicubic", "grid_w", "grid_wplus", "grid_wplus_endpoint_grid"):
        assert math.isfinite(m["real"]["x2"][name]["psnr"]) and -1 <= m["real"]["x2"][name]["ssim"] <= 1
    assert 0 < m["generated"]["x2"]["ssim_bicubic_vs_grid"] <= 1
    assert set(m["summary"]) == {f"{a}_{b}_x2" for a in ("psnr", "ssim") for b in ("bicubic", "grid_wplus")}
    assert (run / "real_letters.png").is_file() and (run / "generated.png").is_file()


# ---- notebooks 04-10 on generators other than the letters model (random-weight emoji and ImageNet-preset checkpoints)

LEVELS = {"emoji": 6, "imagenet": 10}
SMOKE_LATENTS = {"emoji": 8, "imagenet": 1}      # smoke: the ImageNet preset's render cost (width 1024) caps it at one latent


def _other_model(m, kind):
    """metrics["model"] describes the checkpoint of `kind` (conftest's `other_generator`)."""
    assert m["model"] == {"dataset": {"emoji": "emoji-groups"}.get(kind, kind), "letters": False, "num_classes": {"emoji": 8, "imagenet": 1000}[kind],
                          "channels": 3, "resolution": 16}


@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_04_heatmaps_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("04_heatmaps", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    L = LEVELS[kind]
    assert m["skipped"] == ["the letters classifier (label_changed / label_alt of the mixes, the level roles read from them)"]
    assert "reading" not in m and m["n_sensitivity"] == SMOKE_LATENTS[kind] and m["measure_size"] == 16
    assert m["groups"] == {k: list(v) for k, v in an.level_groups(L).items()}
    for name, s in m["sensitivity_per_level"].items():
        assert set(s) == {"pixel_change", "coarse_share", "dc_share", "centroid_shift", "ink_change"}, name
        assert len(s["pixel_change"]) == L and all(v > 0 for v in s["pixel_change"])
        # the image mean lies in the span of the 4x4 block means, so its share of a change is never larger
        assert all(0 <= d <= c + 1e-6 <= 1 + 2e-6 for c, d in zip(s["coarse_share"], s["dc_share"]))
    assert math.isclose(sum(m["pixel_change_share_per_group"].values()), 1.0, rel_tol=1e-5)
    one, per_level = m["resample_one_level_per_group"], m["sensitivity_per_level"]["same_class"]["pixel_change"]
    fine = an.level_groups(L)["fine"]
    assert math.isclose(one["fine"]["pixel_change"], sum(per_level[i] for i in fine) / len(fine), rel_tol=1e-6)
    assert all(len(v) == L and all(-1 <= x <= 1 for x in v) for v in m["ink_correlation"].values())
    for name in ("heatmaps_features_mean", "heatmaps_features_l2", "heatmaps_affine_l2", "level_sensitivity"):
        assert (run / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_05_extrapolation_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("05_extrapolation", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    assert m["skipped"] == ["the ring's ink read against the letters' white background"]
    ulp = 2.5e-7 * max(1.0, m["zoom_out"]["4"]["max_abs"])     # about one float32 ulp of the values (random weights: up to ~40)
    assert m["in_frame_max_abs_diff"] <= ulp and m["in_frame_max_abs_diff_dense"] <= ulp   # the frame is untouched
    assert m["grid"] == 16 and m["margin_pixels"] == 4 and math.isclose(m["extent"][0], -4 / 15)
    assert m["n_stats"] == SMOKE_LATENTS[kind]
    assert list(m["zoom_out"]) == ["0", "4", "8"]
    for margin, v in m["zoom_out"].items():
        assert v["extent"] == list(an.frame_extent(16, int(margin))[0]) and 0 <= v["share_abs_over_2"] <= 1
    assert math.isclose(m["boundary_step_ratio"], m["boundary_step_across"] / m["boundary_step_inside"], rel_tol=1e-12)
    assert 0 <= m["ink_ring"] <= 1 and 0 <= m["ink_inside"] <= 1
    assert (run / "extrapolation.png").stat().st_size > 1000 and (run / "zoom_out.png").stat().st_size > 1000


@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_06_high_resolution_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("06_high_resolution", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    assert m["skipped"] == ["grey_fraction (the edges of black ink on white)",
                            "part (b), held-out-font letters against their true high-resolution glyphs"]
    assert m["factors"] == [1, 2] and "real" not in m and "generated_grey_fraction_1x" not in m
    g = m["generated"]["x2"]
    assert set(g) == {"psnr_bicubic_vs_grid", "ssim_bicubic_vs_grid", "consistency_grid_max_abs", "consistency_grid_psnr",
                      "consistency_bicubic_psnr"}
    assert math.isfinite(g["psnr_bicubic_vs_grid"]) and 0 < g["ssim_bicubic_vs_grid"] <= 1
    # every pixel of the box-averaged grid render is within max_abs of the 1x render (in [0, 1] units: max_abs / 2)
    assert g["consistency_grid_psnr"] >= 20 * math.log10(2 / g["consistency_grid_max_abs"]) - 1e-3
    assert m["summary"] == {"psnr_bicubic_vs_grid_x2": g["psnr_bicubic_vs_grid"], "ssim_bicubic_vs_grid_x2": g["ssim_bicubic_vs_grid"]}
    assert (run / "generated.png").stat().st_size > 1000 and not (run / "real_letters.png").exists()


# ---- end of the notebooks 04-06 block


def test_07_interpolation_notebook(smoke):
    run, m = smoke("07_interpolation")
    assert m["endpoint_ws_max_abs_diff_w"] == 0.0                        # the end codes are the sources
    assert m["endpoint_ws_max_abs_diff_z"] < 1e-5 and m["endpoint_max_abs_diff_w"] < 1e-3
    assert m["ppl_w"] > 0 and m["ppl_z"] > 0
    assert math.isclose(m["ppl_ratio_z_over_w"], m["ppl_z"] / m["ppl_w"], rel_tol=1e-9)
    for kind in ("w", "z", "classes"):
        assert m["smoothness"][kind]["step_mean"] > 0 and m["smoothness"][kind]["max_over_mean"] >= 1
    assert 0 <= m["class_path"]["share_frames_neither"] <= 1
    assert (run / "interpolation_w.png").is_file() and (run / "interpolation_classes.png").is_file()


def test_08_style_mixing_notebook(smoke):
    run, m = smoke("08_style_mixing")
    assert m["conditions"]["mask"] == [0, 8, 9]
    for d in (m["votes"], m["votes_per_level"]):
        assert all(math.isclose(v["a"] + v["b"] + v["other"], 1.0, rel_tol=1e-6) for v in d.values())
    # taking no level from B is A's image, every level is B's image: the vote equals the sources' own
    assert m["votes_sources"]["a_alone"]["a"] > m["votes_sources"]["a_alone"]["b"]
    assert m["votes_sources"]["b_alone"]["b"] > m["votes_sources"]["b_alone"]["a"]
    for name in ("coarse", "middle", "fine", "mask"):
        assert (run / f"mixing_{name}.png").is_file()


def test_09_inversion_notebook(smoke):
    run, m = smoke("09_inversion")
    assert m["loss"] == "multiscale" and "fell back" in m["loss_note"]   # offline: no timm weights
    n = m["n_heldout"] + m["n_train"]
    assert len(m["per_target"]["psnr_wplus"]) == n and m["per_target"]["heldout"][:m["n_heldout"]] == [True] * m["n_heldout"]
    heldout = torch.tensor(m["per_target"]["psnr_wplus"][:m["n_heldout"]])
    assert m["psnr_mean"] == pytest.approx(heldout.mean().item(), rel=1e-5)
    assert m["psnr_mean"] > m["psnr_init"] and m["psnr_mean_w"] > m["psnr_init"]   # optimisation helped
    assert 0 < m["ssim_mean"] <= 1 and 0 < m["ssim_mean_w"] <= 1
    assert m["pti"]["steps"] == 5 and m["upsampled"]["2"]["bicubic"]["psnr"] > 0
    for name in ("reconstructions_heldout", "loss_curves", "upsampled", "inverted_interpolation", "inverted_mixing",
                 "pivotal_tuning"):
        assert (run / f"{name}.png").stat().st_size > 1000, name


def test_10_explorer_notebook(smoke):
    run, m = smoke("10_explorer")
    assert m["repeats"] == 3
    assert all(m["views_differ_from_start"].values()) and len(m["views_differ_from_start"]) == 9
    assert m["invalid_value_kept_state"] and "seed:" in m["invalid_value_message"]
    assert m["mapping_cache_hits"] > 0
    assert 0 <= m["bf16_vs_f32_mean_abs_diff_u8"] < 10
    assert (run / "explorer_views.png").stat().st_size > 1000


# ---- notebooks 07-10 on generators other than the letters model (random-weight emoji and ImageNet-preset checkpoints)

@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_07_interpolation_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("07_interpolation", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    assert m["skipped"] == ["the letters classifier's labels along the class-to-class paths",
                            "the perceptual path length in the letters classifier's features (pixels instead)"]
    assert "class_path" not in m and m["ppl_features"].startswith("pixels")
    assert m["endpoint_ws_max_abs_diff_w"] == 0.0 and m["endpoint_ws_max_abs_diff_z"] < 1e-5
    assert m["endpoint_max_abs_diff_w"] < 1e-3 and m["endpoint_max_abs_diff_z"] < 1e-3
    assert math.isfinite(m["ppl_w"]) and m["ppl_w"] > 0 and math.isfinite(m["ppl_z"]) and m["ppl_z"] > 0
    assert math.isclose(m["ppl_ratio_z_over_w"], m["ppl_z"] / m["ppl_w"], rel_tol=1e-9)
    for k in ("w", "z", "classes"):
        assert m["smoothness"][k]["step_mean"] > 0 and m["smoothness"][k]["max_over_mean"] >= 1
    for name in ("interpolation_w", "interpolation_z", "interpolation_classes", "ppl_hist"):
        assert (run / f"{name}.png").stat().st_size > 1000, name
    assert not (run / "class_probability.png").exists()                  # the classifier's curve is letters-only


@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_08_style_mixing_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("08_style_mixing", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    L = LEVELS[kind]
    assert m["levels"] == L and m["conditions"]["mask"] == [0] + [i for i in (8, 9) if i < L]
    assert m["conditions"] == {**{k: list(v) for k, v in an.level_groups(L).items()}, "mask": m["conditions"]["mask"]}
    assert m["skipped"] == ["the letters classifier's votes on whose letter survives"] and "votes" not in m
    assert m["all_levels_vs_b_max_abs_diff"] < 1e-4                       # every level from B is B's image
    for name, d in m["grid_distance"].items():
        assert d["to_a"] > 0 and d["to_b"] > 0, name                      # a mix of some levels is neither source
    for name in ("coarse", "middle", "fine", "mask"):
        assert (run / f"mixing_{name}.png").stat().st_size > 1000
    assert not (run / "votes.png").exists()


@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_09_inversion_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("09_inversion", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    assert m["skipped"] == ["held-out-font and training-font letter targets (images generated from other seeds instead)",
                            "the true high-resolution glyphs (the generating code's high-resolution render instead)"]
    assert m["n_train"] == 0 and m["psnr_mean_train"] is None and m["real_targets"].startswith("no real images")
    n = m["n_heldout"]
    assert len(m["per_target"]["classes"]) == n and len(m["per_target"]["psnr_wplus"]) == n
    assert m["psnr_mean"] == pytest.approx(sum(m["per_target"]["psnr_wplus"]) / n, rel=1e-5)
    assert m["psnr_mean"] > m["psnr_init"] and m["psnr_mean_w"] > m["psnr_init"]   # optimisation helped
    assert 0 < m["ssim_mean"] <= 1 and m["target_size"] == {"emoji": 16, "imagenet": 12}[kind]
    assert m["pti"]["steps"] == 5 and math.isfinite(m["upsampled"]["2"]["inr_wplus"]["psnr"])
    for name in ("reconstructions_heldout", "loss_curves", "upsampled", "inverted_interpolation", "inverted_mixing",
                 "pivotal_tuning"):
        assert (run / f"{name}.png").stat().st_size > 1000, name


@pytest.mark.parametrize("kind", ["emoji", "imagenet"])
def test_10_explorer_other_models(smoke, other_checkpoints, kind):
    run, m = smoke("10_explorer", checkpoint=str(other_checkpoints[kind]))
    _other_model(m, kind)
    names = an.class_names(polyinr.load_generator(other_checkpoints[kind]))
    assert m["skipped"] == [] and m["class_picker_count"] == len(names) and m["class_picker_first"] == names[:8]
    if kind == "emoji":
        assert m["class_picker_first"][0] == "faces"
    assert all(m["views_differ_from_start"].values()) and len(m["views_differ_from_start"]) == 9
    assert m["invalid_value_kept_state"] and m["mapping_cache_hits"] > 0
    assert (run / "explorer_views.png").stat().st_size > 1000

# ---- end of notebooks 07-10 on other generators


# ---- an unconditional model and a file in the official release's format


@pytest.mark.parametrize("name", ["04_heatmaps", "07_interpolation"])
def test_notebooks_on_an_unconditional_model(smoke, other_checkpoints, name):
    """An unconditional model has the one implicit class 0: the notebooks that spread samples over classes
    run on it (the FFHQ preset, random weights), skipping their letters-only parts."""
    run, m = smoke(name, checkpoint=str(other_checkpoints["ffhq"]))
    assert m["model"] == {"dataset": "ffhq", "letters": False, "num_classes": 0, "channels": 3, "resolution": 16}
    assert m["skipped"] and all(isinstance(s, str) for s in m["skipped"])
    if name == "07_interpolation":
        assert m["endpoint_ws_max_abs_diff_w"] == 0.0 and m["ppl_w"] > 0


def test_10_explorer_on_an_official_release_file(smoke, other_checkpoints):
    """`-p checkpoint FILE.pkl`: a notebook opens a file in the official release's pickle format."""
    run, m = smoke("10_explorer", checkpoint=str(other_checkpoints["official"]))
    assert m["model"] == {"dataset": "official release", "letters": False, "num_classes": 10, "channels": 3,
                          "resolution": 8}
    assert m["class_picker_count"] == 10 and m["class_picker_first"] == [str(i) for i in range(8)]
    assert all(m["views_differ_from_start"].values()) and m["invalid_value_kept_state"]


def test_11_baselines_notebook(smoke):
    run, m = smoke("11_baselines")
    keys = {"params", "fd_letters", "precision_letters", "recall_letters", "class_consistency", "img_per_s",
            "fd_letters_x4"}
    for arch in ("polyinr", "conv", "cips"):
        assert set(m[arch]) == keys and all(math.isfinite(v) for v in m[arch].values()), arch
        assert 0 <= m[arch]["recall_letters"] <= 1 and m[arch]["img_per_s"] > 0
        fit = polyinr.load_generator(run / "fits" / f"{arch}-s0" / "generator.pt")
        assert fit.cfg.arch == arch and polyinr.count_parameters(fit) == m[arch]["params"]
    assert abs(m["conv"]["params"] / m["polyinr"]["params"] - 1) < 0.10
    assert abs(m["cips"]["params"] / m["polyinr"]["params"] - 1) < 0.10
    fits = m["fits"]
    assert [fits[f"polyinr-s{s}"]["seed"] for s in range(2)] == [0, 1] and "polyinr-s2" not in fits   # smoke: 2 seeds
    assert m["polyinr"]["fd_letters"] == pytest.approx(sum(fits[f"polyinr-s{s}"]["fd_letters"] for s in range(2)) / 2)
    # conv: the 4x column is its bicubic upsampling, so both 4x scores are one number
    assert fits["conv-s0"]["fd_letters_x4"] == pytest.approx(fits["conv-s0"]["fd_letters_bicubic_x4"])
    assert fits["cips-s0"]["fd_letters_x4"] != pytest.approx(fits["cips-s0"]["fd_letters_bicubic_x4"])
    assert set(m["same_time"]) == {"polyinr", "conv", "cips"}
    assert [(c["levels"], c["width"]) for c in m["capacity"]] == [(2, 16), (4, 16)]
    assert len(m["ablations"]) == 3 and (run / "capacity.png").stat().st_size > 1000      # smoke: the first three
    assert m["ablations"]["default recipe"] == fits["polyinr-s0"]                             # trained once


def test_12_emoji_notebook(smoke):
    from polyinr.training.emoji import EMOJI_GROUPS
    run, m = smoke("12_emoji")
    G = polyinr.load_generator(run / "generator.pt")
    assert (G.dataset, G.class_names, G.cfg.img_channels, G.cfg.num_classes) == ("emoji-groups", list(EMOJI_GROUPS), 3, 8)
    assert set(m["groups"]) == set(EMOJI_GROUPS) and m["params"] == polyinr.count_parameters(G)
    n = sum(m["groups"].values())
    assert (m["quality_protocol"]["half_a"], m["quality_protocol"]["half_b"]) == (n // 2, n - n // 2)
    q = m["quality"]                                  # a few steps of a tiny model are far from the real floor
    assert q["fd"]["model"] > q["fd"]["floor"] and q["recall"]["model"] < q["recall"]["floor"]
    assert m["extrapolation"]["in_frame_max_abs_diff"] == 0                    # the frame is the normal render
    assert set(m["hires"]) == {"x4"} and set(m["mixing_distance"]) == {"coarse", "middle", "fine"}
    for name in ("reals", "samples", "samples_x4", "high_resolution", "extrapolation", "interpolation_w",
                 "interpolation_groups", "mixing_fine", "heatmaps_features"):
        assert (run / f"{name}.png").stat().st_size > 1000, name
