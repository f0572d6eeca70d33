"""Data-parallel training through torchrun (gloo on CPU) and exact resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from polyinr.core.checkpoint import load_checkpoint

CFG = dict(g_overrides={"width": 16, "levels": 3}, resolution=8, batch=8, tick_kimg=0.016, d_width=8,
           d_max_width=16, precision="fp32", deterministic=True, grid_rows=1, eval_ticks=0)


def _cmd(run_dir, nproc: int, cfg: dict, resume=None):
    cfg_path = run_dir.parent / f"{run_dir.name}.json"
    cfg_path.write_text(json.dumps(cfg))
    train = ["-m", "polyinr.train", "--run-dir", str(run_dir), "--config", str(cfg_path), "--no-progress"]
    if resume:
        train += ["--resume", str(resume)]
    if nproc == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *train]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(run_dir, nproc, cfg, resume=None):
    out = subprocess.run(_cmd(run_dir, nproc, cfg, resume), env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return load_checkpoint(run_dir / "latest.pt")


def _params(ck):
    return {f"{part}.{k}": v for part in ("G", "G_ema", "D") for k, v in ck[part].items()}


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path):
    cfg = {**CFG, "kimg": 0.032}                                        # 4 steps of the global batch 8
    one = _run(tmp_path / "one", 1, cfg)
    two = _run(tmp_path / "two", 2, cfg)
    assert one["step"] == two["step"] == 4
    a, b = _params(one), _params(two)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    assert torch.allclose(one["G"]["mapping.w_avg"], two["G"]["mapping.w_avg"], atol=1e-6)   # all-reduced update
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["world_size"] == 2 and config["rank_seeds"] == [0, 1] and config["batch_per_process"] == 4
    assert len(two["rng_ranks"]) == 2
    assert not torch.equal(two["rng_ranks"][0]["torch"], two["rng_ranks"][1]["torch"])   # per-rank seeds differ


def _kill_after_first_checkpoint(cmd, run_dir, timeout=300):
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    t0 = time.time()
    while not (run_dir / "latest.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() - t0 < timeout
        time.sleep(0.05)
    time.sleep(0.3)                                                     # land somewhere after the checkpoint
    os.killpg(proc.pid, signal.SIGKILL)                                 # the whole job, every rank
    proc.wait()
    return load_checkpoint(run_dir / "latest.pt")


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_sigkill_and_resume_is_bit_exact(tmp_path, nproc):
    cfg = {**CFG, "kimg": 0.4, "tick_kimg": 0.04}                     # 50 steps, a checkpoint every 5
    full = _run(tmp_path / "full", nproc, cfg)
    killed = _kill_after_first_checkpoint(_cmd(tmp_path / "crash", nproc, cfg), tmp_path / "crash")
    assert killed["step"] < full["step"]                                # it really died before the end
    resumed = _run(tmp_path / "crash", nproc, cfg, resume=tmp_path / "crash")
    assert resumed["step"] == full["step"]
    a, b = _params(full), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for part in ("opt_G", "opt_D"):
        sa, sb = full[part]["state"], resumed[part]["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert torch.equal(full["G"]["mapping.w_avg"], resumed["G"]["mapping.w_avg"])
    stats = [json.loads(ln) for ln in (tmp_path / "crash" / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == list(range(5, 51, 5))         # no duplicated or missing ticks


@pytest.mark.slow
def test_launch_from_python_follows_a_two_process_job(tmp_path):
    """What notebooks/02_train does with nproc > 1."""
    import polyinr
    from polyinr.core.config import get_train_preset
    from polyinr.training.loop import launch
    cfg = get_train_preset("letters", **{**CFG, "kimg": 0.016})
    run = launch(cfg, tmp_path / "job", nproc=2, progress=False)
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert polyinr.load_generator(run / "generator.pt").cfg.width == 16
    with pytest.raises(RuntimeError, match="torchrun job failed"):
        launch(get_train_preset("letters", **{**CFG, "batch": 7, "ms_weight": 0.0}), tmp_path / "bad", nproc=2,
               progress=False)
    with pytest.raises(ValueError, match="nproc"):
        launch(cfg, tmp_path / "x", nproc=0)
