"""The official release's ImageNet checkpoints (GitHub Rajhans0/Poly_INR, `.pkl`), read without
executing anything from the file, and mapped exactly onto `Generator` (method notes sections 2 and 7).

The release writes `dill.dump({G, D, G_ema, augment_pipe, training_set_kwargs, progress})` from live
modules. Its network classes are pickled by reference (module path + name) and two of them as
"persistent" objects whose state travels with the source code of their module, which the release's own
loader executes. `OfficialUnpickler` resolves only an allow-list of data builders (tensor and storage
rebuilds, OrderedDict, sets, numpy scalars and dtypes); every class and function the release's file is
known to reference (its networks, its discriminator, torch.nn and timm modules, dill's function
builders) becomes an inert stand-in that only keeps its state; anything else is refused before it is
called (`UnsafePickleError`, naming the global). Tensor storages are decoded lazily, so only the
weights of the requested generator are ever materialised.

Mapping onto `Generator` (release -> ours; the equations are the same, only the layout differs):
- the release's grid is row-first (channel 0 = row = our y, channel 1 = column = our x), so the
  coordinate rows of every head are swapped: A_i (a, b) <- (row 1, row 0), M_i <- S M_i S, t_i <- t_i S
  with S the 2x2 swap; the cumulative warp, the level-0 heads without activation, the style FC of
  levels >= 1 and the clamps are the released structure our defaults already implement;
- equalised-LR layers keep their weights; if a stored gain differs from the one our `FC` computes,
  the ratio is folded into the weights (float64), so outputs match either way;
- the 1x1 conv to RGB becomes a linear layer; the per-class w_avg and the truncation are kept.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import pickle
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig, get_preset
from .model import Generator

FORMAT = "official Poly_INR pickle"


class UnsafePickleError(ValueError):
    """The file references a global outside the allow-list; nothing from it was executed."""


class OfficialFormatError(ValueError):
    """The file is truncated, corrupt, or not laid out like the release's checkpoints."""


# ----------------------------------------------------------------------------- inert stand-ins


class Inert:
    """An object of a class that is never imported: keeps its constructor arguments, its pickled
    state (`state`) and any items or list entries, and does nothing else."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.items[len(self.items)] = value

    def extend(self, values):
        for v in values:
            self.append(v)

    def __call__(self, *args, **kwargs):   # e.g. a stand-in function object that the file then calls
        return _standin(f"{self.qualname}()")(*args, **kwargs)

    def __repr__(self):
        return f"<inert {self.qualname}>"


class InertDict(dict):
    """Stand-in for dict subclasses of the release (dnnlib's EasyDict): a plain dict plus state."""

    qualname = "?"

    def __setstate__(self, state):
        self.state = state


class Persistent:
    """A `torch_utils.persistence` object: class name and state (meta['state']); the module source
    carried by the file is dropped unread."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            raise OfficialFormatError(f"persistent object: expected meta with a 'state' dict, got {type(meta).__name__}")
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.state = meta["state"]

    def __repr__(self):
        return f"<persistent {self.class_name}>"


class ModuleRef:
    """dill's `_import_module(name)`, without importing: attributes resolve through the allow-list."""

    def __init__(self, name):
        if not isinstance(name, str):
            raise OfficialFormatError(f"dill._dill._import_module: expected a module name, got {type(name).__name__}")
        self.name = name


_STANDINS: dict[str, type] = {}


def _standin(qualname: str, base: type = Inert) -> type:
    """One stand-in class per global, so the same global always resolves to the same class."""
    if qualname not in _STANDINS:
        _STANDINS[qualname] = type(qualname.rsplit(".", 1)[-1], (base,), {"qualname": qualname})
    return _STANDINS[qualname]


# ----------------------------------------------------------------------------- tensors, decoded on demand


class LazyStorage:
    """A storage pickled as `torch.storage._load_from_bytes(b)`: `b` is a legacy `torch.save` of one
    (possibly CUDA-tagged) storage, decoded on first use with weights_only=True onto the CPU."""

    def __init__(self, data):
        if not isinstance(data, (bytes, bytearray)):
            raise OfficialFormatError(f"torch.storage._load_from_bytes: expected bytes, got {type(data).__name__}")
        self.data, self.storage = data, None

    def load(self):
        if self.storage is None:
            try:
                s = torch.load(io.BytesIO(self.data), map_location="cpu", weights_only=True)
            except Exception as e:
                raise OfficialFormatError(f"a tensor storage could not be decoded (torch.load weights_only=True: {e})") from e
            if not isinstance(s, torch.TypedStorage):
                raise OfficialFormatError(f"a tensor storage decoded to {type(s).__name__}, expected a storage")
            self.storage, self.data = s, None
        return self.storage


class LazyTensor:
    """`torch._utils._rebuild_tensor_v2` (and `_rebuild_parameter`) without touching the storage."""

    def __init__(self, storage, offset, size, stride, *rest):
        if not isinstance(storage, LazyStorage):
            raise OfficialFormatError(f"tensor rebuild: expected a storage, got {type(storage).__name__}")
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    @property
    def shape(self) -> tuple:
        return self.size

    def load(self) -> torch.Tensor:
        s = self.storage.load()
        t = torch.empty(0, dtype=s.dtype)
        return t.set_(s._untyped_storage, self.offset, self.size, self.stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, LazyTensor):
        raise OfficialFormatError(f"torch._utils._rebuild_parameter: expected a tensor, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- numpy scalars and dtypes

_NUMERIC_KINDS = "biufc"


def _np_dtype(name, align=False, copy=True):
    try:
        dt = np.dtype(name)
    except TypeError as e:
        raise OfficialFormatError(f"numpy.dtype: unknown dtype {name!r}") from e
    if dt.kind not in _NUMERIC_KINDS:
        raise UnsafePickleError(f"numpy.dtype {name!r}: only numeric dtypes are accepted")
    return dt


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise OfficialFormatError(f"numpy scalar: expected a numeric dtype and {getattr(dtype, 'itemsize', '?')} "
                                  f"bytes, got {dtype!r}, {type(data).__name__}")
    return np.frombuffer(data, dtype=dtype)[0].copy()


# ----------------------------------------------------------------------------- the allow-list

_SCALAR_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core._multiarray_umath",
                   "numpy._core._multiarray_umath")

SAFE = {
    ("torch.storage", "_load_from_bytes"): LazyStorage,
    ("torch._utils", "_rebuild_tensor_v2"): LazyTensor,
    ("torch._utils", "_rebuild_tensor"): LazyTensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("numpy", "dtype"): _np_dtype,
    ("dill._dill", "_import_module"): ModuleRef,
    **{(m, "scalar"): _np_scalar for m in _SCALAR_MODULES},
}

# Classes and functions the release's files reference that are never needed as real objects: its
# networks, the discriminator and its timm / torch.nn modules, spectral-norm hooks, the augmentation
# pipe, numpy arrays (in D), and dill's builders of functions, code objects and cells (D's forward
# hooks are closures). They become `Inert` stand-ins: calling one only records its arguments.
STANDIN_PREFIXES = ("training.", "torch_utils.", "dnnlib.", "pg_modules.", "feature_networks.", "metrics.",
                    "timm.", "torch.nn.", "torch.ao.nn.", "torchvision.transforms.")
STANDIN_GLOBALS = {
    ("numpy", "ndarray"), *((m, "_reconstruct") for m in _SCALAR_MODULES),
    ("functools", "partial"),
    ("dill._dill", "_create_function"), ("dill._dill", "_create_code"), ("dill._dill", "_create_cell"),
    ("dill._dill", "_create_namedtuple"),
}
DICT_STANDINS = {("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict")}
PERSISTENT = ("torch_utils.persistence", "_reconstruct_persistent_obj")


def resolve_global(module: str, name: str):
    """The object a pickled reference `module.name` stands for, or UnsafePickleError."""
    if (module, name) == PERSISTENT:
        return Persistent
    if (module, name) == ("dill._dill", "_get_attr"):
        return _get_attr
    if (module, name) == ("dill._dill", "_load_type"):
        return _load_type
    if (module, name) in SAFE:
        return SAFE[(module, name)]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if (module, name) in DICT_STANDINS:
        return _standin(f"{module}.{name}", InertDict)
    if (module, name) in STANDIN_GLOBALS or module.startswith(STANDIN_PREFIXES):
        return _standin(f"{module}.{name}")
    raise UnsafePickleError(f"global {module}.{name} is not allowed in an official Poly_INR checkpoint; "
                            f"refused before anything was executed")


def _load_type(name):
    """dill's `_load_type(name)` (types such as MethodType, CodeType): a stand-in class."""
    if not isinstance(name, str):
        raise OfficialFormatError(f"dill._dill._load_type: expected a type name, got {type(name).__name__}")
    return _standin(f"types.{name}")


def _get_attr(obj, name):
    """dill's `_get_attr(obj, name)`: on a module reference, the allow-list decides; on a stand-in,
    another stand-in; anything else is refused."""
    if not isinstance(name, str):
        raise OfficialFormatError(f"dill._dill._get_attr: expected an attribute name, got {type(name).__name__}")
    if isinstance(obj, ModuleRef):
        return resolve_global(obj.name, name)
    if isinstance(obj, (Inert, InertDict)) or (isinstance(obj, type) and issubclass(obj, (Inert, InertDict))):
        return _standin(f"{obj.qualname}.{name}")
    raise UnsafePickleError(f"global dill._dill._get_attr on a {type(obj).__name__} object ({name!r}) is not allowed")


class OfficialUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves globals only through `resolve_global`."""

    def find_class(self, module, name):
        return resolve_global(module, name)

    def persistent_load(self, pid):
        raise OfficialFormatError(f"persistent id {str(pid)[:80]!r}: the release's pickles carry none (a torch.save "
                                  f"file? load it with polyinr.load_generator or torch.load)")


class _HashingReader:
    """A binary file wrapper that feeds everything read through SHA-256."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def read(self, n=-1):
        b = self.f.read(n)
        self.sha.update(b)
        return b

    def readinto(self, buf):
        n = self.f.readinto(buf)
        self.sha.update(memoryview(buf)[:n])
        return n

    def readline(self):
        b = self.f.readline()
        self.sha.update(b)
        return b

    def hexdigest(self) -> str:
        for block in iter(lambda: self.f.read(1 << 20), b""):   # bytes after the pickle, if any
            self.sha.update(block)
        return self.sha.hexdigest()


def read_official(path) -> tuple[dict, str]:
    """Unpickle an official checkpoint with `OfficialUnpickler` -> (its top-level dict with stand-ins and
    lazy tensors, SHA-256 of the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as raw:
        f = _HashingReader(raw)
        if raw.read(1) != b"\x80":
            raise OfficialFormatError(f"official checkpoint {str(path)!r} is not a pickle file (expected a protocol "
                                      f"2+ pickle as written by dill.dump)")
        raw.seek(0)
        try:
            data = OfficialUnpickler(f).load()
        except (UnsafePickleError, OfficialFormatError) as e:
            raise type(e)(f"official checkpoint {str(path)!r}: {e}") from None
        except Exception as e:   # EOFError, UnpicklingError, ...: a truncated or corrupt file
            raise OfficialFormatError(f"official checkpoint {str(path)!r} is truncated or corrupt "
                                      f"({type(e).__name__}: {e})") from None
        sha = f.hexdigest()
    if not isinstance(data, dict):
        raise OfficialFormatError(f"official checkpoint {str(path)!r}: expected a dict with 'G_ema', "
                                  f"got {type(data).__name__}")
    return data, sha


# ----------------------------------------------------------------------------- from stand-ins to tensors


def module_state(obj, where: str) -> dict:
    """The attribute dict of a pickled torch module (plain or persistent)."""
    state = obj.state if isinstance(obj, (Inert, Persistent)) else None
    if isinstance(state, tuple) and len(state) == 2:   # (dict state, slot state)
        state = state[0]
    if not isinstance(state, dict) or "_parameters" not in state:
        raise OfficialFormatError(f"{where}: expected a pickled torch module, got {obj!r}")
    return state


def named_tensors(obj, prefix: str = "") -> dict:
    """{dotted name: LazyTensor} of every parameter and buffer under a pickled module."""
    state = module_state(obj, prefix or "G_ema")
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is not None:
                out[prefix + name] = t
    for name, sub in (state.get("_modules") or {}).items():
        if sub is not None:
            out.update(named_tensors(sub, f"{prefix}{name}."))
    return out


def _child(obj, path: str):
    for name in path.split("."):
        obj = module_state(obj, path)["_modules"].get(name)
        if obj is None:
            raise OfficialFormatError(f"G_ema has no module {path!r}")
    return obj


def _attr(obj, path: str, name: str):
    state = module_state(obj, path)
    if name not in state:
        raise OfficialFormatError(f"G_ema.{path} has no attribute {name!r}")
    return state[name]


# ----------------------------------------------------------------------------- the release -> our Generator


def infer_config(T: dict, G_ema) -> ModelConfig:
    """Our ModelConfig from the shapes (and stored attributes) of the release's generator."""
    def shape(name):
        if name not in T:
            raise OfficialFormatError(f"G_ema has no tensor {name!r}; it has {sorted(T)[:12]}...")
        return T[name].shape

    mapping = _child(G_ema, "mapping")
    width, w_dim = shape("synthesis.fc0_0.weight")[0], shape("synthesis.fc0_2.weight")[1]
    levels = 1
    while f"synthesis.fb{levels}.fb0.fc1.weight" in T:
        levels += 1
    layers = 0
    while f"mapping.fc{layers}.weight" in T:
        layers += 1
    z_dim = int(_attr(mapping, "mapping", "z_dim"))
    num_classes = int(_attr(mapping, "mapping", "c_dim"))
    N = shape("synthesis.grid")[1]
    R = math.isqrt(N)
    if R * R != N or R < 2:
        raise OfficialFormatError(f"G_ema.synthesis.grid: expected R*R points, got {N}")
    lr_mult = float(_attr(_child(G_ema, "mapping.fc0"), "mapping.fc0", "bias_gain"))
    cfg = ModelConfig(z_dim=z_dim, w_dim=w_dim, num_classes=num_classes,
                      embed_dim=shape("mapping.embed.weight")[1] if num_classes else ModelConfig.embed_dim,
                      mapping_layers=layers, mapping_lr_mult=lr_mult,
                      w_avg_beta=float(_attr(mapping, "mapping", "w_avg_beta")), width=width, levels=levels,
                      img_channels=shape("synthesis.to_rgb.weight")[0], resolution=R)
    num_ws = int(_attr(mapping, "mapping", "num_ws"))
    if num_ws != levels:
        raise OfficialFormatError(f"G_ema.mapping.num_ws = {num_ws} but the synthesis has {levels} levels")
    return cfg


def _check_grid(grid: torch.Tensor, R: int) -> None:
    a = torch.arange(R, dtype=torch.float32) / (R - 1)
    expected = torch.stack(torch.meshgrid(a, a, indexing="ij"), -1).view(1, R * R, 2)   # row-first
    if grid.shape != expected.shape or not torch.allclose(grid.float(), expected, atol=1e-6, rtol=0):
        raise OfficialFormatError(f"G_ema.synthesis.grid is not the release's regular {R}x{R} grid on [0, 1]^2; "
                                  f"it cannot be expressed by polyinr's coordinate grid")


def _fc(G_ema, path: str, T: dict, out: dict, ours: str, lr_mult: float) -> None:
    """An equalised-LR layer of the release -> our `FC` (gains folded in where they differ)."""
    layer = _child(G_ema, path)
    act = _attr(layer, path, "activation")
    if act != "lrelu":
        raise OfficialFormatError(f"G_ema.{path}: activation {act!r}, expected 'lrelu'")
    w, b = T[f"{path}.weight"].load(), T.get(f"{path}.bias")
    if b is None:
        raise OfficialFormatError(f"G_ema.{path}: a layer without bias cannot be mapped")
    b = b.load()
    wg, bg = float(_attr(layer, path, "weight_gain")), float(_attr(layer, path, "bias_gain"))
    our_wg, our_bg = lr_mult / math.sqrt(w.shape[1]), lr_mult
    out[f"{ours}.weight"] = w if wg == our_wg else (w.double() * (wg / our_wg)).float()
    out[f"{ours}.bias"] = b if bg == our_bg else (b.double() * (bg / our_bg)).float()


def _heads(T: dict, src: str, n: int):
    """Heads of one release level (A: fc0_1, c: fc0_2, M: fc0_3, t: fc0_4) -> our affine and warp
    (weight, bias), with the coordinate channels swapped from (row, column) to (x, y)."""
    def wb(name):
        return T[f"{src}{name}.weight"].load(), T[f"{src}{name}.bias"].load()

    (Aw, Ab), (cw, cb), (Mw, Mb), (tw, tb) = wb("fc0_1"), wb("fc0_2"), wb("fc0_3"), wb("fc0_4")
    affine = [torch.cat([v[n:2 * n], v[:n], c]) for v, c in ((Aw, cw), (Ab, cb))]      # rows a (x), b (y), c
    swap = [3, 2, 1, 0, 5, 4]                                                           # S M S, t S
    warp = [torch.cat([M, t])[swap] for M, t in ((Mw, tw), (Mb, tb))]
    return affine, warp


def official_state_dict(T: dict, G_ema, cfg: ModelConfig) -> dict:
    """Our Generator's state dict from the release's tensors `T` (lazy) and module states."""
    n = cfg.width
    sd = {}
    if cfg.conditional:
        embed = T["mapping.embed.weight"].load()   # the release's table can hold more rows than c_dim
        if embed.shape[0] < cfg.num_classes:
            raise OfficialFormatError(f"G_ema.mapping.embed has {embed.shape[0]} rows for {cfg.num_classes} classes")
        sd["mapping.embed.weight"] = embed[:cfg.num_classes]
        _fc(G_ema, "mapping.embed_proj", T, sd, "mapping.embed_proj", 1.0)
    for i in range(cfg.mapping_layers):
        _fc(G_ema, f"mapping.fc{i}", T, sd, f"mapping.fcs.{i}", cfg.mapping_lr_mult)
    sd["mapping.w_avg"] = T["mapping.w_avg"].load()
    for i in range(cfg.levels):
        src = "synthesis." if i == 0 else f"synthesis.fb{i}."
        dst = f"synthesis.levels.{i}."
        (sd[dst + "affine.weight"], sd[dst + "affine.bias"]), (sd[dst + "warp.weight"], sd[dst + "warp.bias"]) = \
            _heads(T, src, n)
        lin = "synthesis.fc0_0" if i == 0 else f"synthesis.fb{i}.fb0.fc1"
        sd[dst + "linear.weight"], sd[dst + "linear.bias"] = T[lin + ".weight"].load(), T[lin + ".bias"].load()
        if i > 0:
            _fc(G_ema, f"synthesis.fb{i}.fc0_5", T, sd, dst + "style", 1.0)
    sd["synthesis.to_rgb.weight"] = T["synthesis.to_rgb.weight"].load().reshape(cfg.img_channels, n)
    sd["synthesis.to_rgb.bias"] = T["synthesis.to_rgb.bias"].load()
    return sd


def load_official(path, key: str = "G_ema") -> Generator:
    """The generator `key` ("G_ema" or "G") of an official Poly_INR `.pkl` as our `Generator` (eval mode,
    CPU, float32), with `G.provenance` = {source, sha256, format, note}. Nothing from the file is executed;
    the discriminator and the other generator are never decoded."""
    if key not in ("G_ema", "G"):
        raise ValueError(f"key: expected 'G_ema' or 'G', got {key!r}")
    data, sha = read_official(path)
    if key not in data:
        raise OfficialFormatError(f"official checkpoint {str(path)!r} has no {key!r} entry; it has {sorted(data)}")
    G_src = data[key]
    kind = getattr(G_src, "qualname", type(G_src).__name__)
    if kind not in ("training.networks_gmgan.Generator", "training.networks_gmgan.SuperresGenerator"):
        raise OfficialFormatError(f"official checkpoint {str(path)!r}: {key} is a {kind}, expected "
                                  f"training.networks_gmgan.Generator or SuperresGenerator")
    try:
        T = named_tensors(G_src)
        cfg = infer_config(T, G_src)
        _check_grid(T["synthesis.grid"].load(), cfg.resolution)
        sd = official_state_dict(T, G_src, cfg)
    except (OfficialFormatError, KeyError, AttributeError, TypeError) as e:   # a layout we cannot map
        raise OfficialFormatError(f"official checkpoint {str(path)!r}: {type(e).__name__}: {e}") from None
    preset = "imagenet" if cfg == get_preset("imagenet", resolution=cfg.resolution) else None
    dataset = "imagenet" if cfg.num_classes == 1000 else "official release"   # the release trained ImageNet only
    G = Generator(cfg, preset=preset, dataset=dataset)   # on the CPU (the meta device costs seconds of imports)
    try:
        G.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise OfficialFormatError(f"official checkpoint {str(path)!r}: its {key} does not fit the inferred "
                                  f"config: {e}") from None
    G.provenance = {"source": Path(path).name, "sha256": sha, "format": FORMAT, "key": key,
                    "note": f"converted from the release's {kind.rsplit('.', 1)[-1]} ({cfg.resolution}x"
                            f"{cfg.resolution} grid); coordinates swapped from (row, column) to (x, y)"}
    return G.eval().requires_grad_(False)
