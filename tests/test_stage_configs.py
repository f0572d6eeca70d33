"""The paper-scale stage configs load, validate and build the released models (on the meta device)."""
from pathlib import Path

import pytest
import torch
import yaml

import polyinr
from polyinr.core.config import get_train_preset
from polyinr.tools.bench import estimate_training_memory
from polyinr.tools.experiments import repo_root

STAGES = sorted((repo_root() / "experiments/configs/train").glob("*.yaml"))
PARAMS = {"imagenet": 45_869_695, "ffhq": 13_198_399}


def test_every_stage_is_there():
    names = [p.stem for p in STAGES]
    assert names == ["ffhq-032", "ffhq-064", "ffhq-128", "ffhq-256",
                     "imagenet-032", "imagenet-064", "imagenet-128", "imagenet-256", "imagenet-512"]


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.stem)
def test_stage_config_builds_the_released_model(path: Path):
    preset, res = path.stem.split("-")
    fields = yaml.safe_load(path.read_text())
    cfg = get_train_preset(preset, **fields)
    assert cfg.resolution == int(res) and cfg.batch == 64 and cfg.kimg == 10_000
    assert cfg.discriminator == "projected" and cfg.lr_g == 1e-4 and cfg.lr_d == 2e-4 and cfg.betas == (0.0, 0.99)
    assert cfg.blur_init_sigma == 2.0 and cfg.blur_fade_kimg == 300 and cfg.ema_kimg == 20
    local = cfg.batch // 8
    assert local % (cfg.batch_gpu or local) == 0                   # valid on 8 processes
    assert ("--resume runs/" in path.read_text()) == (res != "032")     # later stages resume the previous one
    with torch.device("meta"):
        G = polyinr.build_generator(preset, resolution=cfg.resolution)
    assert polyinr.count_parameters(G) == PARAMS[preset]


def test_memory_estimate_counts_weights_and_activations():
    cfg = get_train_preset("letters", resolution=8, batch=4, g_overrides={"width": 16, "levels": 3})
    small = estimate_training_memory(cfg, processes=1, channels=1)
    big = estimate_training_memory(get_train_preset("letters", resolution=16, batch=4,
                                                    g_overrides={"width": 16, "levels": 3}), processes=1, channels=1)
    assert small["g_params"] == polyinr.count_parameters(polyinr.build_generator("letters", width=16, levels=3))
    assert 0 < small["bytes"]["g_step_activations"] < big["bytes"]["g_step_activations"]   # grows with the pixels
    half = estimate_training_memory(get_train_preset("letters", resolution=16, batch=4, batch_gpu=2,
                                                     g_overrides={"width": 16, "levels": 3}), processes=1, channels=1)
    assert half["bytes"]["g_step_activations"] < big["bytes"]["g_step_activations"]       # micro-batches save memory
    # the synthesis at width 16 saves at least its level inputs: 3 levels x [4 * 16^2, 16] floats
    assert big["bytes"]["g_step_activations"] >= 3 * 4 * 256 * 16 * 4
