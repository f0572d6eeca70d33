"""Check `polyinr.load_official` against the official release's own code (GitHub Rajhans0/Poly_INR).

    PYTHONPATH=DEPS python experiments/tools/check_official.py --official CHECKOUT [--out JSON]
        [--save-pkl FILE.pkl [--save-resolution 512]]

DEPS holds what the release's code imports and polyinr does not need (dill; timm==0.4.12 to build its
discriminator too), e.g. `pip install --target DEPS dill==0.3.4 timm==0.4.12 --no-deps`. The script
imports `training.networks_gmgan` from CHECKOUT, builds its Generator (32 px) and, through its own stem
pickle, its SuperresGenerator (128 px) at the ImageNet size (width 1024, 10 levels, 1000 classes) with
random weights (the zero-initialised biases and w_avg randomised too), writes {G, D, G_ema, ...} with
dill as its training loop does, loads the file with polyinr, and prints JSON with the largest
differences of ws (truncation psi 0.7 and 1.0, class-conditional) and of the images (relative to the
release's image range). With --save-pkl it also writes a full-size official-format file at
--save-resolution and measures, in fresh processes without DEPS, the CPU time and peak memory of
`load_official` and of rendering one image. The release's code is run here, never inside polyinr.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
B32, B128 = 4, 2


def import_release(checkout: Path):
    """The release's generator module (and its discriminator class, or the reason it is missing)."""
    sys.path.insert(0, str(checkout))
    try:
        import tkinter  # noqa: F401   (the release imports turtle, which needs Tk)
    except ImportError:
        turtle = types.ModuleType("turtle")
        turtle.forward = None
        sys.modules["turtle"] = turtle
    import training.networks_gmgan as ng  # its CUDA plugins are only built on first use on a GPU
    try:
        for name in ("ftfy", "regex"):   # CLIP tokenizer dependencies: CLIP is not one of its backbones
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["feature_networks.clip"] = types.ModuleType("feature_networks.clip")
        import timm
        create = timm.create_model
        timm.create_model = lambda name, pretrained=False, **kw: create(name, pretrained=False, **kw)
        from pg_modules.discriminator import ProjectedDiscriminator
        return ng, ProjectedDiscriminator, f"timm {timm.__version__}, random backbone weights"
    except Exception as e:   # noqa: BLE001  (any import failure: check G without D)
        return ng, None, f"not built ({type(e).__name__}: {e})"


def build_D(D_cls):
    if D_cls is None:
        return None
    return D_cls(backbones=["deit_base_distilled_patch16_224", "tf_efficientnet_lite0"], diffaug=True,
                 interp224=True, c_dim=1000,
                 backbone_kwargs=dict(cout=64, expand=True, proj_type=2, num_discs=4, cond=1))


@torch.no_grad()
def randomise(G) -> None:
    """Give the normally zero-initialised parts values, so that the comparison sees them."""
    for m in G.modules():
        if type(m).__name__ == "FullyConnectedLayer":
            m.bias.normal_(0, 1)
    G.mapping.w_avg.normal_(0, 1)


def dump_release(path: Path, G, D) -> None:
    import dill
    data = dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=dict(resolution=G.synthesis.img_resolution),
                progress={"cur_nimg": torch.LongTensor([0]), "cur_tick": torch.LongTensor([0]),
                          "batch_idx": torch.LongTensor([0]), "best_fid": 9999})
    with open(path, "wb") as f:
        dill.dump(data, f)


def build_release(ng, work: Path, resolution: int, D):
    """The release's Generator at 32 px, or its SuperresGenerator from a 32 px stem pickle."""
    torch.manual_seed(resolution)
    G = ng.Generator(z_dim=64, c_dim=1000, w_dim=512, img_resolution=32, img_channels=3,
                     mapping_kwargs=dict(num_layers=2, rand_embedding=False))
    randomise(G)
    if resolution == 32:
        return G.eval()
    stem = work / "stem.pkl"
    dump_release(stem, G, None)
    G = ng.SuperresGenerator(path_stem=str(stem), img_resolution=resolution)
    return G.eval()


@torch.no_grad()
def compare(G_rel, path: Path, batch: int) -> dict:
    import polyinr
    G = polyinr.load_official(path)
    R = G.cfg.resolution
    torch.manual_seed(0)
    z = torch.randn(batch, 64)
    c = torch.randint(0, 1000, (batch,))
    onehot = torch.nn.functional.one_hot(c, 1000).float()
    out = {"resolution": R, "batch": batch}
    for psi in (0.7, 1.0):
        ws_rel = G_rel.mapping(z, onehot, truncation_psi=psi)
        img_rel = G_rel.synthesis(ws_rel, onehot)
        ws = G.mapping(z, c, psi=psi)
        img = polyinr.render(G, ws, R, R)
        span = float(img_rel.max() - img_rel.min())
        out[f"psi={psi}"] = {"ws_max_abs_diff": float((ws - ws_rel).abs().max()),
                             "ws_max_abs": float(ws_rel.abs().max()),
                             "image_range": span, "image_std": float(img_rel.std()),
                             "image_max_abs_diff_rel_range": float((img - img_rel).abs().max()) / span}
    return out


BENCH = r"""
import json, sys, threading, time, os
import psutil, torch
import polyinr
proc = psutil.Process()
peak = [0]
def poll():
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)
threading.Thread(target=poll, daemon=True).start()
mode, path = sys.argv[1], sys.argv[2]
time.sleep(0.05)
base = proc.memory_info().rss
peak[0] = base
t = time.perf_counter()
if mode == "load":
    G = polyinr.load_official(path)
    out = {"load_s": time.perf_counter() - t}
else:
    G = polyinr.load_generator(path)
    time.sleep(0.05)
    base = proc.memory_info().rss
    peak[0] = base
    R = int(sys.argv[3])
    ws = G.mapping(torch.randn(1, G.cfg.z_dim), torch.tensor([207]), psi=0.7)
    t = time.perf_counter()
    img = polyinr.render(G, ws, R, R)
    out = {"render_s": time.perf_counter() - t, "finite": bool(torch.isfinite(img).all())}
time.sleep(0.05)
weights = sum(p.numel() * p.element_size() for p in G.state_dict().values())
out.update(peak_rss_above_start_MB=(peak[0] - base) / 2**20, weights_MB=weights / 2**20,
           peak_rss_beyond_weights_MB=(peak[0] - base - weights) / 2**20 if mode == "load" else None,
           threads=torch.get_num_threads(), dill_imported="dill" in sys.modules, timm_imported="timm" in sys.modules)
print(json.dumps(out))
"""


def bench(mode: str, *args) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # polyinr needs neither dill nor timm
    res = subprocess.run([sys.executable, "-c", BENCH, mode, *map(str, args)], capture_output=True, text=True,
                         env=env, cwd=REPO, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark {mode} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, type=Path, help="checkout of the release (Rajhans0/Poly_INR)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--save-pkl", type=Path, default=None, help="write a full-size official-format file and "
                                                                "benchmark loading and rendering it")
    ap.add_argument("--save-resolution", type=int, default=512)
    args = ap.parse_args(argv)
    if not (args.official / "training" / "networks_gmgan.py").is_file():
        ap.error(f"--official {str(args.official)!r}: expected a checkout with training/networks_gmgan.py")
    checkout = args.official.resolve()
    out_path = args.out.resolve() if args.out else None
    save = args.save_pkl.resolve() if args.save_pkl else None
    import dill
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "dill": dill.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in_embeddings").mkdir()
        with open(work / "in_embeddings" / "tf_efficientnet_lite0.pkl", "wb") as f:   # random class embedding
            torch.manual_seed(1)
            pickle.dump({"embed": torch.nn.Embedding(1000, 320)}, f)
        os.chdir(work)   # the release reads its embedding table from a path relative to the working folder
        ng, D_cls, result["D"] = import_release(checkout)
        t = time.perf_counter()
        D = build_D(D_cls)
        result["D_parameters"] = sum(p.numel() for p in D.parameters()) if D is not None else 0
        for res, batch in ((32, B32), (128, B128)):
            G_rel = build_release(ng, work, res, D)
            path = work / f"official{res}.pkl"
            dump_release(path, G_rel, D)
            result[f"{res}px"] = compare(G_rel, path, batch)
            result[f"{res}px"]["file_MB"] = path.stat().st_size / 2**20
            print(json.dumps({f"{res}px": result[f"{res}px"]}), flush=True)
        if save is not None:
            save.parent.mkdir(parents=True, exist_ok=True)
            G_rel = build_release(ng, work, args.save_resolution, D)
            dump_release(save, G_rel, D)
            del G_rel
            result["full_size"] = {"file": save.name, "file_MB": save.stat().st_size / 2**20,
                                   "load": bench("load", save)}
            pt = save.with_suffix(".pt")
            subprocess.run([sys.executable, "-m", "polyinr.checkpoint", "convert", str(save), str(pt)], check=True,
                           cwd=REPO, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
            result["full_size"]["render_one_image"] = bench("render", pt, args.save_resolution)
        result["seconds"] = time.perf_counter() - t
    text = json.dumps(result, indent=2)
    print(text)
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
