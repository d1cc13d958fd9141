"""params.yaml: the single source of every knob, validated before any work.

A stage reads its knobs through `load_params`, which checks every key against
SCHEMA, so that a typo'd value (`train.lr: 1e-4x`) or a wrong type stops the
stage at once with a message naming the key, instead of failing an hour later.
"""
from pathlib import Path
from types import SimpleNamespace

import yaml

from lib.errors import ParamsError

DATASETS = ("textures", "folder")
BACKBONES = ("efficientnet_lite0", "resnet18", "rgb")

# key -> a type (or tuple of types) or a tuple of allowed string values
SCHEMA = {
    "seed": int,
    "data.name": DATASETS,
    "data.root": str,
    "data.res": int,
    "data.seed": int,
    "data.train_size": int,
    "data.val_size": int,
    "data.val_fraction": float,
    "model.backbone": BACKBONES,
    "model.weights": str,
    "model.dim": int,
    "model.levels": int,
    "model.classifier": ("prototype", "linear"),
    "aug.photometric": bool,
    "aug.geometric": bool,
    "aug.crop_scale": float,
    "loss.cross": bool,
    "loss.balance": bool,
    "loss.equivariance": ("cluster", "mse"),
    "cluster.k": int,
    "cluster.k_over": int,
    "cluster.single": bool,
    "cluster.images": int,
    "cluster.max_points": int,
    "cluster.niter": int,
    "cluster.labels": ("snapshot", "online"),
    "train.epochs": int,
    "train.batch_size": int,
    "train.lr": float,
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": bool,
    "dump.train_points": int,
    "report.images": int,
}

POSITIVE = {"data.res", "model.dim", "cluster.k", "cluster.niter", "cluster.max_points",
            "train.batch_size", "dump.train_points", "data.train_size", "data.val_size"}


def _flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _namespace(d):
    return SimpleNamespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def validate(raw, source="params.yaml"):
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    flat = _flatten(raw)
    unknown = sorted(set(flat) - set(SCHEMA))
    if unknown:
        raise ParamsError(f"{source}: unknown key '{unknown[0]}' (known keys: {', '.join(SCHEMA)})")
    for key, spec in SCHEMA.items():
        if key not in flat:
            raise ParamsError(f"{source}: missing key '{key}'")
        value = flat[key]
        if isinstance(spec, tuple) and all(isinstance(s, str) for s in spec):
            if value not in spec:
                raise ParamsError(f"{source}: '{key}' is {value!r}; expected one of {', '.join(spec)}")
            continue
        ok = isinstance(value, spec) and not (spec is int and isinstance(value, bool))
        if spec is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # 1 is a fine learning rate
        if not ok:
            raise ParamsError(f"{source}: '{key}' must be {spec.__name__}, got {value!r} "
                              f"({type(value).__name__})")
        if key in POSITIVE and value <= 0:
            raise ParamsError(f"{source}: '{key}' must be positive, got {value}")
    if flat["data.res"] % 32:
        raise ParamsError(f"{source}: 'data.res' must be a multiple of 32 (the backbone's stride), got {flat['data.res']}")
    if flat["data.name"] == "folder" and not flat["data.root"]:
        raise ParamsError(f"{source}: 'data.root' must name a folder when data.name is 'folder'")
    if not 0.0 < flat["aug.crop_scale"] <= 1.0:
        raise ParamsError(f"{source}: 'aug.crop_scale' must be in (0, 1], got {flat['aug.crop_scale']}")
    if flat["cluster.k_over"] < 0:
        raise ParamsError(f"{source}: 'cluster.k_over' must be 0 (off) or a cluster count, got {flat['cluster.k_over']}")
    if flat["model.backbone"] == "rgb" and flat["train.epochs"] != 0:
        raise ParamsError(f"{source}: 'model.backbone: rgb' has nothing to train; set 'train.epochs: 0'")
    float_keys = [k for k, s in SCHEMA.items() if s is float]
    for k in float_keys:
        flat[k] = float(flat[k])
    return flat


def load_params(path="params.yaml"):
    """Load and validate params.yaml; returns a namespace (`p.train.lr`)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    flat = validate(raw, str(path))
    nested = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return _namespace(nested)


def as_dict(ns):
    return {k: as_dict(v) if isinstance(v, SimpleNamespace) else v for k, v in vars(ns).items()}
