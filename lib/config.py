"""params.yaml: the single source of every knob, validated before any work.

A stage reads its knobs through `load_params`, which checks every key against
SCHEMA, so that a typo'd value (`train.lr: 1e-4x`) or a wrong type stops the
stage at once with a message naming the key, instead of failing an hour later.
"""
import contextlib
import math
from pathlib import Path
from types import SimpleNamespace

import yaml

from lib import methods
from lib.errors import ParamsError

BACKBONES = ("efficientnet_lite0", "resnet18", "rgb")

# Each dataset's protocol (FACTS.md, sections 1 and 2), used where params say `auto`:
# res = evaluation side and side of the views the network sees; train_res =
# side of the stored training images the views are cropped from, as a multiple
# of res; k = classes (folder: the lines of its classes.txt); then the training
# schedule: train.lr, train.epochs, train.batch_size and cluster.images (the
# images clustered each epoch). PiCIE's authors published COCO-Stuff-27's (lr
# 1e-4) and Cityscapes' (lr 1e-3): 10 epochs, batches of 128, k-means on the
# first 20 batches of 256 images (5,120). The other real sets take COCO's,
# for want of published values; the embedded set and folders take the values
# chosen on the embedded data. A method's own values (its module's TRAIN,
# e.g. InfoSeg's paper lr and batch) come before the protocol's.
EMBEDDED = dict(lr=5e-4, epochs=6, batch_size=32, cluster_images=160)
AUTHORS_COCO = dict(lr=1e-4, epochs=10, batch_size=128, cluster_images=5120)
PROTOCOLS = {
    "textures": dict(res=128, train_scale=1, k=8, **EMBEDDED),
    "folder": dict(res=128, train_scale=1, k=None, **EMBEDDED),
    "cocostuff27": dict(res=320, train_scale=2, k=27, **AUTHORS_COCO),  # PiCIE: 640 px crops, views at 320
    "cocostuff15": dict(res=128, train_scale=1.25, k=15, **AUTHORS_COCO),  # IIC: 0.33 x image, 128 px crops
    "cocostuff3": dict(res=128, train_scale=1.25, k=3, **AUTHORS_COCO),
    "cityscapes27": dict(res=320, train_scale=2, k=27, **{**AUTHORS_COCO, "lr": 1e-3}),
    "cocopersons": dict(res=128, train_scale=1, k=2, **AUTHORS_COCO),  # InfoSeg: 128 x 128
    "potsdam": dict(res=200, train_scale=1, k=6, **AUTHORS_COCO),  # IIC: 400 px crops halved to 200
    "potsdam3": dict(res=200, train_scale=1, k=3, **AUTHORS_COCO),
}
DATASETS = tuple(PROTOCOLS)
AUTO = "auto"
# params that `auto` resolves from the protocol (or the method): key -> the protocol's name for it
SCHEDULE = {"train.lr": "lr", "train.epochs": "epochs", "train.batch_size": "batch_size",
            "cluster.images": "cluster_images"}
CLASSIFIERS = ("prototype", "linear", "argmax")

# key -> a type (or tuple of types) or a tuple of allowed string values. A method's own section
# (iic.*, infoseg.*) is declared by its module (PARAMS) and joined in by `schema()`.
SCHEMA = {
    "seed": int,
    "method": methods.NAMES,
    "data.name": DATASETS,
    "data.root": str,
    "data.res": (AUTO, int),
    "data.train_res": (AUTO, int),
    "data.split": ("picie", "standard"),
    "data.seed": int,
    "data.train_size": int,
    "data.val_size": int,
    "data.imbalance": float,
    "data.val_fraction": float,
    "data.min_side": int,
    "data.stuff_fraction": float,
    "data.person_min_fraction": float,
    "data.person_max_fraction": float,
    "data.workers": int,
    "model.backbone": BACKBONES,
    "model.weights": str,
    "model.dim": int,
    "model.levels": int,
    "model.classifier": (AUTO,) + CLASSIFIERS,
    "aug.photometric": bool,
    "aug.geometric": bool,
    "aug.crop_scale": float,
    "aug.hue": float,
    "aug.crop_measure": ("area", "side"),
    "loss.cross": bool,
    "loss.balance": (True, False, "proportional"),
    "loss.equivariance": ("cluster", "mse"),
    "loss.scores": ("cosine", "dot"),
    "loss.views": ("sum", "mean"),
    "loss.temperature": float,
    "cluster.k": (AUTO, int),
    "cluster.k_over": int,
    "cluster.single": bool,
    "cluster.images": (AUTO, int),
    "cluster.max_points": int,
    "cluster.niter": int,
    "cluster.restarts": int,
    "cluster.labels": ("snapshot", "online"),
    "cluster.linear_epochs": int,
    "cluster.head_fit": int,
    "cluster.linear_lr": float,
    "cluster.backend": ("faiss", "torch"),
    "cluster.bn": ("eval", "train"),
    "train.epochs": (AUTO, int),
    "train.batch_size": (AUTO, int),
    "train.lr": (AUTO, float),
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": bool,
    "train.amp_cpu": bool,
    "train.threads": int,
    "train.allocator": ("reuse", "system"),
    "train.nproc": int,
    "train.timeout": int,
    "curves.every": int,
    "curves.images": int,
    "curves.max_points": int,
    "dump.train_points": int,
    "probe.epochs": int,
    "probe.lr": float,
    "probe.normalize": bool,
    "retrain.init": ("unsupervised", "weights", "random"),
    "retrain.epochs": int,
    "retrain.lr": float,
    "report.images": int,
    "report.queries": int,
    "report.neighbours": int,
}

POSITIVE = {"data.res", "data.train_res", "data.min_side", "data.train_size", "data.val_size", "model.dim",
            "cluster.k", "cluster.niter", "cluster.max_points", "cluster.restarts", "cluster.linear_epochs",
            "cluster.linear_lr", "train.batch_size", "train.lr", "train.nproc", "train.timeout", "loss.temperature", "curves.images",
            "curves.max_points", "dump.train_points", "probe.epochs", "probe.lr", "retrain.epochs", "retrain.lr",
            "report.images", "report.neighbours"}
# keys where 0 means something (off, none) but a negative value nothing; others have their own range below
NON_NEGATIVE = {"seed", "data.seed", "curves.every", "report.queries", "train.threads", "cluster.head_fit"}


def schema():
    """SCHEMA and every method's own section; the keys that must be positive, and those that must not be
    negative (a method's numbers are, unless its module lists them as POSITIVE)."""
    full, positive, non_negative = dict(SCHEMA), set(POSITIVE), set(NON_NEGATIVE)
    for name in methods.NAMES:
        method = methods.get(name)
        own = {f"{name}.{key}": spec for key, spec in getattr(method, "PARAMS", {}).items()}
        full.update(own)
        positive |= {f"{name}.{key}" for key in getattr(method, "POSITIVE", ())}
        non_negative |= {key for key, spec in own.items() if spec in (int, float)}
    return full, positive, non_negative - positive


def flatten(d, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}: params as `-S` and dvc.yaml name them."""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def set_key(raw, key, value):
    """raw['a']['b'] = value for key 'a.b', making missing sections; returns raw."""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return raw


def apply_settings(raw, settings):
    """raw params with `key=value` settings on top, each value read as `dvc exp run -S` reads it: as
    YAML, and an empty value as the empty string (Hydra's override grammar, which DVC uses)."""
    for kv in settings:
        key, value = kv.split("=", 1)
        set_key(raw, key, yaml.safe_load(value) if value else "")
    return raw


def _namespace(d):
    return SimpleNamespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def validate(raw, source="params.yaml"):
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    flat = flatten(raw)
    spec_of, positive, non_negative = schema()
    unknown = sorted(set(flat) - set(spec_of))
    if unknown:
        raise ParamsError(f"{source}: unknown key '{unknown[0]}' (known keys: {', '.join(spec_of)})")
    for key, spec in spec_of.items():
        if key not in flat:
            raise ParamsError(f"{source}: missing key '{key}'")
        value = flat[key]
        what = None
        if isinstance(spec, tuple) and all(isinstance(s, (str, bool)) for s in spec):
            # the listed values, of their own type (1 is not true, "true" is not true)
            if not any(value == s and type(value) is type(s) for s in spec):
                names = [str(s).lower() if isinstance(s, bool) else s for s in spec]
                raise ParamsError(f"{source}: '{key}' is {value!r}; expected one of {', '.join(names)}")
            continue
        if isinstance(spec, tuple) and spec[0] == AUTO:
            if value == AUTO:
                continue
            spec, what = spec[1], f"{'an int' if spec[1] is int else 'a number'} or 'auto'"
        if spec is float and isinstance(value, str):
            # PyYAML (YAML 1.1) reads `1e-4` (no dot) as text, and `dvc exp run -S train.lr=1e-4` writes
            # just that: take every spelling Python reads as a number
            with contextlib.suppress(ValueError):
                value = flat[key] = float(value.replace("_", ""))
        if spec is float and isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"{source}: '{key}' must be a finite number, got {value}")
        ok = isinstance(value, spec) and not (spec is int and isinstance(value, bool))
        if spec is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # 1 is a fine learning rate
        if not ok:
            raise ParamsError(f"{source}: '{key}' must be {what or spec.__name__}, got {value!r} "
                              f"({type(value).__name__})")
        if key in positive and value <= 0:
            raise ParamsError(f"{source}: '{key}' must be positive, got {value}")
        if key in non_negative and value < 0:
            raise ParamsError(f"{source}: '{key}' must be 0 or more, got {value}")
    if flat["data.name"] != "textures" and not flat["data.root"]:
        raise ParamsError(f"{source}: 'data.root' must name the dataset's folder when data.name is "
                          f"'{flat['data.name']}'")
    _resolve_auto(flat, source)
    if flat["data.res"] % 4:
        raise ParamsError(f"{source}: 'data.res' must be a multiple of 4 (the feature stride), got {flat['data.res']}")
    if flat["data.train_res"] < flat["data.res"]:
        raise ParamsError(f"{source}: 'data.train_res' ({flat['data.train_res']}) must be at least "
                          f"'data.res' ({flat['data.res']}): views are crops of the training images")
    for key in ("data.stuff_fraction", "data.person_min_fraction", "data.person_max_fraction"):
        if not 0.0 <= flat[key] <= 1.0:
            raise ParamsError(f"{source}: '{key}' must be a fraction in [0, 1], got {flat[key]}")
    if flat["data.person_min_fraction"] > flat["data.person_max_fraction"]:
        raise ParamsError(f"{source}: 'data.person_min_fraction' is above 'data.person_max_fraction'")
    if flat["data.workers"] < 0:
        raise ParamsError(f"{source}: 'data.workers' must be 0 (all cores) or a process count, got {flat['data.workers']}")
    if not 0.0 < flat["data.val_fraction"] < 1.0:
        raise ParamsError(f"{source}: 'data.val_fraction' must be in (0, 1), the share of a folder's images held "
                          f"out for evaluation, got {flat['data.val_fraction']}")
    if not 1 <= flat["model.levels"] <= 4:
        raise ParamsError(f"{source}: 'model.levels' must be 1 to 4 (backbone levels the FPN fuses, from stride "
                          f"4), got {flat['model.levels']}")
    if flat["data.imbalance"] < 1:
        raise ParamsError(f"{source}: 'data.imbalance' must be 1 (uniform classes) or more (how many times the "
                          f"most frequent class of a group is as likely as the least), got {flat['data.imbalance']}")
    if not 0.0 <= flat["aug.hue"] <= 0.5:
        raise ParamsError(f"{source}: 'aug.hue' must be in [0, 0.5] turns of the colour circle, got {flat['aug.hue']}")
    if not 0.0 < flat["aug.crop_scale"] <= 1.0:
        raise ParamsError(f"{source}: 'aug.crop_scale' must be in (0, 1], got {flat['aug.crop_scale']}")
    for key in ("train.epochs", "cluster.images"):  # after `auto` is resolved
        if flat[key] < 0:
            raise ParamsError(f"{source}: '{key}' must be 0 or more, got {flat[key]}")
    if flat["train.batch_size"] % flat["train.nproc"]:
        raise ParamsError(f"{source}: 'train.batch_size' ({flat['train.batch_size']}) must be a multiple of "
                          f"'train.nproc' ({flat['train.nproc']}): each process trains on an equal share of every batch")
    if flat["cluster.k"] < 2:
        raise ParamsError(f"{source}: 'cluster.k' must be at least 2, got {flat['cluster.k']} (one cluster "
                          "segments nothing: every pixel gets it and the loss is 0)")
    if flat["cluster.k_over"] < 0:
        raise ParamsError(f"{source}: 'cluster.k_over' must be 0 (off) or a cluster count, got {flat['cluster.k_over']}")
    if flat["model.backbone"] == "rgb" and flat["train.epochs"] != 0 and methods.trains(flat["method"]):
        untrained = [name for name in methods.NAMES if not methods.trains(name)]
        raise ParamsError(f"{source}: 'model.backbone: rgb' has nothing to train; set 'method' to one that "
                          f"does not train ({', '.join(untrained)}), or 'train.epochs: 0'")
    float_keys = [k for k, s in spec_of.items() if s is float or s == (AUTO, float)]
    for k in float_keys:
        flat[k] = float(flat[k])
    return flat


def _resolve_auto(flat, source):
    """Replace `auto` by the named dataset's protocol value (PROTOCOLS)."""
    proto = PROTOCOLS[flat["data.name"]]
    if flat["data.res"] == AUTO:
        flat["data.res"] = proto["res"]
    if flat["data.train_res"] == AUTO:
        flat["data.train_res"] = round(proto["train_scale"] * flat["data.res"])
    method = methods.get(flat["method"])
    for key, name in SCHEDULE.items():
        if flat[key] == AUTO:
            flat[key] = getattr(method, "TRAIN", {}).get(name, proto[name])
    own = method.CLASSIFIER  # what the method is scored by: its module says
    if flat["model.classifier"] == AUTO:
        flat["model.classifier"] = own
    elif (flat["model.classifier"] == "argmax") != (own == "argmax"):
        why = ("is scored by the argmax of its own assignments" if own == "argmax" else
               "outputs features, not assignments: they are clustered and scored by prototype or linear")
        raise ParamsError(f"{source}: 'model.classifier' is '{flat['model.classifier']}' but method "
                          f"'{flat['method']}' {why}; set 'model.classifier: auto'")
    if flat["cluster.k"] == AUTO:
        k = proto["k"]
        classes = Path(flat["data.root"]) / "classes.txt"
        if flat["data.name"] == "folder" and classes.is_file():
            k = sum(1 for line in classes.read_text().splitlines() if line.strip())
        if not k:
            raise ParamsError(f"{source}: 'cluster.k: auto' needs {classes} (one class name a line); "
                              "or set cluster.k to the number of classes you expect")
        flat["cluster.k"] = k


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
        set_key(nested, key, value)
    return _namespace(nested)


def as_dict(ns):
    return {k: as_dict(v) if isinstance(v, SimpleNamespace) else v for k, v in vars(ns).items()}
