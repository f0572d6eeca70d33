"""Official release checkpoints (`polyinr.core.official`). The pickles are built here from stand-in
classes registered at the release's module paths (`training.networks_gmgan`, `torch_utils.persistence`,
`dnnlib.util`, `pg_modules.discriminator`, `dill._dill`) with the release's state layout at a small size,
and our loaded generator is compared with an independent float64 implementation of the release's
equations (method notes section 7). Neither the release's code nor dill is needed."""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import math
import os
import pickle
import re
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from polyinr.checkpoint import main as checkpoint_main
from polyinr.core.checkpoint import load_generator
from polyinr.core.official import OfficialFormatError, UnsafePickleError, load_official
from polyinr.core.render import synthesize
from polyinr.tools.cli import run_cli

WIDTH, LEVELS, CLASSES, R, Z_DIM, W_DIM, EMBED = 32, 3, 10, 8, 16, 24, 12
SLOPE = 0.2


# ----------------------------------------------------------------------------- the release's layout


def _reconstruct_persistent_obj(meta):   # pickled by reference only; polyinr must never call the real one
    raise AssertionError("the release's persistence hook must not run")


class Persistent(nn.Module):
    """Pickles like the release's persistent classes: meta with the module source and the state."""

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src="raise SystemExit('module source executed')",
                    class_name=type(self).__name__, state=dict(self.__dict__))
        return _reconstruct_persistent_obj, (meta,)


class FullyConnectedLayer(Persistent):
    def __init__(self, fin, fout, activation="lrelu", lr_multiplier=1):
        super().__init__()
        self.in_features, self.out_features, self.activation = fin, fout, activation
        self.weight = nn.Parameter(torch.randn(fout, fin) / lr_multiplier)
        self.bias = nn.Parameter(torch.randn(fout) * 0.5)          # random (not the usual zeros): compared too
        self.weight_gain = lr_multiplier / np.sqrt(fin)              # a numpy float64, as in the release
        self.bias_gain = lr_multiplier
        self._init_args, self._init_kwargs = (fin, fout), dict(activation=activation, lr_multiplier=lr_multiplier)


class MappingNetwork(Persistent):
    def __init__(self, c_dim):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers, self.w_avg_beta = \
            Z_DIM, c_dim, W_DIM, LEVELS, 2, 0.998
        self.embed = nn.Embedding(1000, EMBED)                        # always the 1000-row table
        self.embed_proj = FullyConnectedLayer(EMBED, Z_DIM) if c_dim else None
        self.fc0 = FullyConnectedLayer(Z_DIM * (2 if c_dim else 1), W_DIM, lr_multiplier=0.1)
        self.fc1 = FullyConnectedLayer(W_DIM, W_DIM, lr_multiplier=0.1)
        self.register_buffer("w_avg", torch.randn([c_dim, W_DIM] if c_dim else [W_DIM]))


class BasicBlock(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc1 = nn.Linear(n, n)


class BasicBlockGM(nn.Module):
    def __init__(self, w_dim, n):
        super().__init__()
        self.fb0 = BasicBlock(n)
        self.fc0_1, self.fc0_2, self.fc0_3, self.fc0_4 = nn.Linear(n, 2 * n), nn.Linear(n, n), nn.Linear(n, 4), nn.Linear(n, 2)
        self.fc0_5 = FullyConnectedLayer(w_dim, n, lr_multiplier=1.0)


class GMganSynthesis(nn.Module):
    def __init__(self, grid, w_dim, n):
        super().__init__()
        self.grid = grid
        self.fc0_1, self.fc0_2, self.fc0_0 = nn.Linear(w_dim, 2 * n), nn.Linear(w_dim, n), nn.Linear(n, n)
        self.fc0_3, self.fc0_4 = nn.Linear(w_dim, 4), nn.Linear(w_dim, 2)
        for k in range(1, LEVELS):
            setattr(self, f"fb{k}", BasicBlockGM(w_dim, n))
        self.to_rgb = nn.Conv2d(n, 3, 1)


class Generator(nn.Module):
    def __init__(self, c_dim):
        super().__init__()
        a = torch.arange(R, dtype=torch.float32) / (R - 1)
        g = torch.stack(torch.meshgrid(a, a, indexing="ij"), -1)           # row-first, as the release
        self.gridt = nn.Parameter(g.view(1, R * R, 2), requires_grad=False)
        self.mapping = MappingNetwork(c_dim)
        self.synthesis = GMganSynthesis(self.gridt, W_DIM, WIDTH)


class ProjectedDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 64)
        self._forward_hooks[0] = DillFunction()                        # a closure, pickled by value by dill


class EasyDict(dict):
    pass


# dill's builders, as the release's files reference them (stand-ins: never called here either)
def _get_attr(obj, name):
    raise AssertionError


def _import_module(name):
    raise AssertionError


def _create_function(*args):
    raise AssertionError


def _create_code(*args):
    raise AssertionError


def _create_cell(*args):
    raise AssertionError


class DillModule:
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return _import_module, (self.name,)


class DillAttr:
    """Pickles as dill._dill._get_attr(dill._dill._import_module(module), name), how dill writes numpy's
    scalar constructor."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError

    def __reduce__(self):
        return _get_attr, (DillModule(self.module), self.name)


class DillCode:
    def __reduce__(self):
        return _create_code, (2, 0, 0, 3, 4, 19, b"t\x00\x83\x00S\x00", (None,), ("print",), ("a", "b"), "x.py",
                              "hook", 1, b"")


class DillFunction:
    def __reduce__(self):
        return _create_function, (DillCode(), {}, "hook", None, (DillCell(),))


class DillCell:
    def __reduce__(self):
        return _create_cell, ({},)


MODULES = {
    "training.networks_gmgan": [FullyConnectedLayer, MappingNetwork, BasicBlock, BasicBlockGM, GMganSynthesis,
                                Generator],
    "torch_utils.persistence": [_reconstruct_persistent_obj],
    "dnnlib.util": [EasyDict],
    "pg_modules.discriminator": [ProjectedDiscriminator],
    "dill._dill": [_get_attr, _import_module, _create_function, _create_code, _create_cell],
}


@contextlib.contextmanager
def release_modules():
    """The release's module paths in sys.modules, holding the stand-ins above, while pickling."""
    names = sorted({p for m in MODULES for p in [".".join(m.split(".")[:i]) for i in (1, 2)]})
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    for mod, objs in MODULES.items():
        for obj in objs:
            obj.__module__ = mod
            setattr(sys.modules[mod], obj.__name__, obj)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def cuda_tagged_bytes(storage) -> bytes:
    """A storage as torch.storage.__reduce__ writes it, tagged as a CUDA storage on 'cuda:0' (how the
    release's files were written from live GPU modules)."""
    b = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(storage, b, _use_new_zipfile_serialization=False)
    raw, n = re.subn(rb"ctorch\n(\w+Storage)\n", rb"ctorch.cuda\n\1\n", b.getvalue())
    raw, m = re.subn(rb"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0", raw)
    assert n == 1 and m == 1
    return raw


class ReleasePickler(pickle.Pickler):
    """numpy scalars the dill way, storages CUDA-tagged."""

    def reducer_override(self, obj):
        if isinstance(obj, np.float64):
            return DillAttr("numpy.core._multiarray_umath", "scalar"), (obj.dtype, obj.tobytes())
        if isinstance(obj, torch.TypedStorage):
            return torch.storage._load_from_bytes, (cuda_tagged_bytes(obj),)
        return NotImplemented


def write_release_pickle(path, c_dim=CLASSES, odd_gains=False, seed=0, extra=None):
    torch.manual_seed(seed)
    G = Generator(c_dim)
    G_ema = Generator(c_dim)
    if odd_gains:   # stored gains that differ from lr_mult / sqrt(fan_in): must be folded, not recomputed
        G_ema.mapping.fc1.weight_gain *= 1.5
        G_ema.mapping.fc0.bias_gain = 0.3
        G_ema.synthesis.fb1.fc0_5.weight_gain = np.float64(0.7 / math.sqrt(W_DIM))
    data = dict(G=G, D=ProjectedDiscriminator(), G_ema=G_ema, augment_pipe=None,
                training_set_kwargs=EasyDict(resolution=R, use_labels=True),
                progress={"cur_nimg": torch.LongTensor([1000]), "best_fid": 9.5})
    data.update(extra or {})
    with release_modules(), open(path, "wb") as f:
        ReleasePickler(f, protocol=4).dump(data)
    return G_ema


# ----------------------------------------------------------------------------- independent reference


def reference(Gr, z, c, psi):
    """The release's mapping and synthesis in float64, written from its equations: ws [B, L, w], images
    [B, 3, R, R] on its row-first R x R grid."""
    T = {k: v.detach().double() for k, v in Gr.state_dict().items()}
    m = Gr.mapping

    def lrelu(x):
        return torch.where(x >= 0, x, SLOPE * x)

    def fc(layer, name, x):   # equalised LR with the stored gains; lrelu with gain sqrt(2)
        y = x @ (T[name + ".weight"] * float(layer.weight_gain)).T + T[name + ".bias"] * float(layer.bias_gain)
        return math.sqrt(2) * lrelu(y)

    def lin(name, x):
        return x @ T[name + ".weight"].T + T[name + ".bias"]

    def norm(x):
        return x / torch.sqrt(x.square().mean(1, keepdim=True) + 1e-8)

    x = norm(z.double())
    if m.c_dim:
        y = norm(fc(m.embed_proj, "mapping.embed_proj", T["mapping.embed.weight"][c]))
        x = torch.cat([x, y], 1)
    x = fc(m.fc1, "mapping.fc1", fc(m.fc0, "mapping.fc0", x))
    avg = T["mapping.w_avg"][c] if m.c_dim else T["mapping.w_avg"][None]
    w = avg + psi * (x - avg)
    ws = w[:, None].repeat(1, LEVELS, 1)

    B, n = len(z), WIDTH
    grid = T["gridt"].expand(B, -1, -1)                                # [B, N, 2], channel 0 = row
    h = None
    for i in range(LEVELS):
        p = "synthesis." if i == 0 else f"synthesis.fb{i}."
        u = ws[:, i] if i == 0 else fc(getattr(Gr.synthesis, f"fb{i}").fc0_5, p + "fc0_5", ws[:, i])
        A, b = lin(p + "fc0_1", u).view(B, 2, n), lin(p + "fc0_2", u).view(B, 1, n)
        M, t = lin(p + "fc0_3", u).view(B, 2, 2), lin(p + "fc0_4", u).view(B, 1, 2)
        grid = grid @ M + t                                            # cumulative warp
        g = grid @ A + b
        if i == 0:
            h = lrelu(lin("synthesis.fc0_0", g)).clamp(-256, 256)
        else:
            h = lrelu(lin(p + "fb0.fc1", h * lrelu(g))).clamp(-256, 256)
    rgb = h @ T["synthesis.to_rgb.weight"].view(3, n).T + T["synthesis.to_rgb.bias"]   # [B, N, 3]
    return ws, rgb.transpose(1, 2).reshape(B, 3, R, R)


def compare(G, Gr, c_dim):
    torch.manual_seed(1)
    z = torch.randn(4, Z_DIM)
    c = torch.tensor([0, 3, 7, 9]) if c_dim else None
    for psi in (0.7, 1.0):
        ws_ref, img_ref = reference(Gr, z, torch.zeros(4, dtype=torch.long) if c is None else c, psi)
        with torch.no_grad():
            ws = G.mapping(z, c, psi=psi)
            img = synthesize(G, ws, R, R)
        span = float(img_ref.max() - img_ref.min())
        assert span > 1e-2 and img_ref.std() > 1e-3                     # a meaningful image
        assert (ws.double() - ws_ref).abs().max() <= 1e-5
        assert (img.double() - img_ref).abs().max() <= 1e-4 * span


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("c_dim,odd_gains", [(CLASSES, False), (CLASSES, True), (0, False)])
def test_matches_the_release_equations(tmp_path, c_dim, odd_gains):
    path = tmp_path / "official.pkl"
    Gr = write_release_pickle(path, c_dim=c_dim, odd_gains=odd_gains)
    G = load_official(path)
    assert (G.cfg.width, G.cfg.levels, G.cfg.num_classes, G.cfg.z_dim, G.cfg.w_dim, G.cfg.resolution) == \
        (WIDTH, LEVELS, c_dim, Z_DIM, W_DIM, R)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert G.provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    compare(G, Gr, c_dim)


def test_only_the_requested_generator_is_decoded(tmp_path, monkeypatch):
    path = tmp_path / "official.pkl"
    Gr = write_release_pickle(path)
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    load_official(path)
    assert len(calls) == len(Gr.state_dict()) - 1                      # G_ema's storages (gridt is shared)
    assert all(k.get("weights_only") is True and k.get("map_location") == "cpu" for k in calls)


def test_key_and_dispatch(tmp_path):
    path = tmp_path / "official.pkl"
    write_release_pickle(path)
    G_ema, G = load_generator(path), load_official(path, key="G")
    z = torch.randn(2, Z_DIM)
    c = torch.tensor([1, 2])
    assert not torch.equal(G(z, c), G_ema(z, c))
    assert torch.equal(G_ema(z, c), load_official(path)(z, c))
    assert G_ema.dataset == "official release" and G_ema.provenance["key"] == "G_ema"   # 1000 classes: "imagenet"


@pytest.mark.parametrize("payload,name", [(lambda cmd: (os.system, (cmd,)), "system"),
                                          (lambda cmd: (eval, (f"__import__('os').system({cmd!r})",)), "builtins.eval")])
def test_code_in_the_pickle_is_refused(tmp_path, payload, name):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return payload(f"touch {marker}")

    path = tmp_path / "evil.pkl"
    write_release_pickle(path, extra={"G_ema": {"weights": Evil()}})
    with pytest.raises(UnsafePickleError, match=re.escape(name)) as e:
        load_official(path)
    assert "evil.pkl" in str(e.value)
    assert not marker.exists()


def test_unknown_global_is_named(tmp_path):
    path = tmp_path / "other.pkl"
    mod = types.ModuleType("somepkg.models")

    class Net:
        pass
    Net.__module__, Net.__qualname__ = "somepkg.models", "Net"
    mod.Net = Net
    sys.modules["somepkg"], sys.modules["somepkg.models"] = types.ModuleType("somepkg"), mod
    try:
        path.write_bytes(pickle.dumps({"G_ema": Net()}, protocol=4))
    finally:
        del sys.modules["somepkg"], sys.modules["somepkg.models"]
    with pytest.raises(UnsafePickleError, match=r"somepkg\.models\.Net"):
        load_official(path)


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "official.pkl"
    write_release_pickle(path)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OfficialFormatError, match=r"cut\.pkl.*truncated or corrupt"):
        load_official(cut)
    text = tmp_path / "text.pkl"
    text.write_text("not a pickle")
    with pytest.raises(OfficialFormatError, match=r"text\.pkl.*not a pickle"):
        load_official(text)
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_official(tmp_path / "missing.pkl")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"G_ema": collections.OrderedDict()}, protocol=4))
    with pytest.raises(OfficialFormatError, match="expected training.networks_gmgan"):
        load_official(plain)


def test_convert_cli_round_trip(tmp_path, capsys):
    src, out = tmp_path / "imagenet8.pkl", tmp_path / "imagenet8.pt"
    write_release_pickle(src)
    assert checkpoint_main(["convert", str(src), str(out)]) == 0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["provenance"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert ckpt["provenance"]["source"] == "imagenet8.pkl"
    assert ckpt["provenance"]["format"] == "official Poly_INR pickle"
    z, c = torch.randn(3, Z_DIM), torch.tensor([0, 5, 9])
    a, b = load_generator(out), load_official(src)
    assert a.cfg == b.cfg
    assert torch.equal(a(z, c, psi=0.7), b(z, c, psi=0.7))
    assert run_cli(lambda: checkpoint_main(["convert", str(tmp_path / "none.pkl"), str(out)])) == 2
    assert "none.pkl" in capsys.readouterr().err
