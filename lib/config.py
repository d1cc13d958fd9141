"""params.yaml: the single source of every knob, validated before any work.

A stage reads its knobs through `load_params`, which checks every key against
SCHEMA, so that a typo'd value (`train.lr: 1e-4x`) or a wrong type stops the
stage at once with a message naming the key, instead of failing an hour later.
The datasets (lib/data) and the methods (lib/methods) declare their own keys,
checks and `auto` values; this module names none of them. Reading params
imports no torch: every stage reads them, and DVC runs the fingerprint stage
on every `dvc repro`.
"""
import contextlib
import math
from pathlib import Path
from types import SimpleNamespace

import yaml

from lib import data, methods
from lib.errors import ParamsError

# model.backbone -> the stride of the pixel features it gives: its FPN's finest level (4), or a vision
# transformer's patch size (lib/models/vit.py; a test checks each against the network built)
BACKBONES = {"efficientnet_lite0": 4, "resnet18": 4, "rgb": 4, "dino_vits8": 8, "dino_vits16": 16, "dino_vitb8": 8,
             "dino_vitb16": 16, "dinov2_vits14": 14, "dinov2_vitb14": 14}
AUTO = "auto"
# params that `auto` resolves from the dataset's protocol (lib/data/base.Protocol), or first from the
# method's own values (lib/methods: Method.train, e.g. InfoSeg's paper lr and batch): key -> their name
SCHEDULE = {"train.lr": "lr", "train.epochs": "epochs", "train.batch_size": "batch_size",
            "cluster.images": "cluster_images"}
CLASSIFIERS = ("prototype", "linear", "argmax")

# key -> a type (or tuple of types) or a tuple of allowed string values. A method's own section
# (iic.*, infoseg.*) is declared by its row in lib/methods, a dataset's own keys of the data section
# (data.min_side, ...) by its module in lib/data; `schema()` joins them in.
SCHEMA = {
    "seed": int,
    "method": methods.NAMES,
    "data.name": tuple(data.DATASETS),
    "data.root": str,
    "data.res": (AUTO, int),
    "data.train_res": (AUTO, int),
    "data.seed": int,
    "model.backbone": tuple(BACKBONES),
    "model.weights": str,
    "model.dim": int,
    "model.levels": int,
    "model.classifier": (AUTO,) + CLASSIFIERS,
    "model.freeze": bool,
    "aug.photometric": bool,
    "aug.geometric": bool,
    "aug.crop_scale": float,
    "aug.hue": float,
    "aug.crop_measure": ("area", "side"),
    "loss.cross": bool,
    "loss.balance": (True, False, "proportional"),
    "loss.equivariance": ("cluster", "mse"),
    "loss.logits": ("cosine", "dot"),
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
    "train.amp": bool,
    "train.amp_cpu": bool,
    "train.nproc": int,
    "curves.every": int,
    "curves.images": int,
    "curves.max_points": int,
    "dump.train_points": int,
    "frozen.cache": bool,
    "frozen.dtype": ("float16", "float32"),
    "eval.flip": bool,
    "eval.crf": bool,
    "eval.crf_iterations": int,
    "eval.crf_gaussian_sxy": float,
    "eval.crf_gaussian_weight": float,
    "eval.crf_bilateral_sxy": float,
    "eval.crf_bilateral_srgb": float,
    "eval.crf_bilateral_weight": float,
    "probe.epochs": int,
    "probe.lr": float,
    "probe.normalize": bool,
    "retrain.init": ("unsupervised", "weights", "random"),
    "retrain.epochs": int,
    "retrain.lr": float,
    "report.images": int,
    "report.queries": int,
    "report.retrieved": int,
    # where and how fast a stage computes, not what: no stage lists these as DVC params
    "runtime.device": ("auto", "cpu", "cuda"),
    "runtime.threads": int,
    "runtime.workers": int,
    "runtime.allocator": ("reuse", "system"),
    "runtime.inference_batch": (AUTO, int),
    "runtime.timeout": int,
}

# keys of earlier versions -> their names today: a params.yaml (or a -S setting) of an earlier version is told,
# and the study's records of earlier runs are read under today's names (lib/study/records.py)
RENAMED = {"train.device": "runtime.device", "train.threads": "runtime.threads", "train.allocator": "runtime.allocator",
           "train.timeout": "runtime.timeout", "data.workers": "runtime.workers", "eval.workers": "runtime.workers",
           "loss.scores": "loss.logits", "report.neighbours": "report.retrieved"}

POSITIVE = {"data.res", "data.train_res", "model.dim",
            "cluster.k", "cluster.niter", "cluster.max_points", "cluster.restarts", "cluster.linear_epochs",
            "cluster.linear_lr", "train.batch_size", "train.lr", "train.nproc", "loss.temperature", "curves.images",
            "curves.max_points", "dump.train_points", "eval.crf_iterations", "eval.crf_gaussian_sxy",
            "eval.crf_bilateral_sxy", "eval.crf_bilateral_srgb", "probe.epochs", "probe.lr", "retrain.epochs", "retrain.lr",
            "report.images", "report.retrieved", "runtime.inference_batch", "runtime.timeout"}
# keys where 0 means something (off, none) but a negative value nothing; others have their own range below
NON_NEGATIVE = {"seed", "data.seed", "curves.every", "report.queries", "cluster.head_fit",
                "eval.crf_gaussian_weight", "eval.crf_bilateral_weight", "runtime.threads", "runtime.workers"}


def schema():
    """SCHEMA with every method's own section and every dataset's own data keys; the keys that must be
    positive, and those that must not be negative (a method's or a dataset's numbers are, unless it lists
    them as positive)."""
    full, positive, non_negative = dict(SCHEMA), set(POSITIVE), set(NON_NEGATIVE)
    owners = [(name, method.params, method.positive) for name, method in methods.METHODS.items()]
    owners += [("data", getattr(module, "PARAMS", {}), getattr(module, "POSITIVE", ()))
               for module in data.MODULES]
    for section, params, pos in owners:
        own = {f"{section}.{key}": spec for key, spec in params.items()}
        clash = [key for key, spec in own.items() if key in full and full[key] != spec]
        if clash:  # two datasets declaring one key as different things: a bug of the registries, not of params
            raise ValueError(f"'{clash[0]}' is declared twice, differently")
        full.update(own)
        positive |= {f"{section}.{key}" for key in pos}
        non_negative |= {key for key, spec in own.items() if spec in (int, float, (AUTO, int), (AUTO, float))}
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
    moved = [key for key in unknown if key in RENAMED]
    if moved:
        raise ParamsError(f"{source}: '{moved[0]}' is called '{RENAMED[moved[0]]}' now (docs/pipeline.md)")
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
    own = {key[len("data."):]: value for key, value in flat.items() if key.startswith("data.")}
    if data.protocol(flat["data.name"]).root and not flat["data.root"]:
        raise ParamsError(f"{source}: 'data.root' must name the dataset's folder when data.name is "
                          f"'{flat['data.name']}'")
    for module in data.MODULES:  # every dataset's keys, the one in use or not: a bad value waits for no switch
        if hasattr(module, "check"):
            module.check(own, source)
    _resolve_auto(flat, own, source)
    stride = feature_stride(flat)
    if flat["data.res"] % stride:
        near = sorted({flat["data.res"] // stride * stride, -(-flat["data.res"] // stride) * stride} - {0})
        raise ParamsError(f"{source}: 'data.res' must be a multiple of the feature stride ({stride} for "
                          f"{flat['model.backbone']}), got {flat['data.res']}: {' or '.join(map(str, near))}")
    if flat["data.train_res"] < flat["data.res"]:
        raise ParamsError(f"{source}: 'data.train_res' ({flat['data.train_res']}) must be at least "
                          f"'data.res' ({flat['data.res']}): views are crops of the training images")
    for name, method in methods.METHODS.items():
        for key in (f"{name}.{k}" for k in method.fractions):
            if not 0.0 < flat[key] <= 1.0:
                raise ParamsError(f"{source}: '{key}' must be a fraction in (0, 1], got {flat[key]}")
    if flat["model.freeze"] and methods.spec(flat["method"]).stride:
        raise ParamsError(f"{source}: 'model.freeze' is true but method '{flat['method']}' trains a network of its "
                          "own, with no backbone of model.backbone to freeze")
    if not 1 <= flat["model.levels"] <= 4:
        raise ParamsError(f"{source}: 'model.levels' must be 1 to 4 (backbone levels the FPN fuses, from stride "
                          f"4), got {flat['model.levels']}")
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
    if flat["cluster.k_over"] < 0 or 0 < flat["cluster.k_over"] <= flat["cluster.k"]:
        raise ParamsError(f"{source}: 'cluster.k_over' must be 0 (off) or an overclustering above 'cluster.k' "
                          f"({flat['cluster.k']}), got {flat['cluster.k_over']}")
    if flat["model.backbone"] == "rgb" and flat["train.epochs"] != 0 and methods.trains(flat["method"]):
        untrained = [name for name in methods.NAMES if not methods.trains(name)]
        raise ParamsError(f"{source}: 'model.backbone: rgb' has nothing to train; set 'method' to one that "
                          f"does not train ({', '.join(untrained)}), or 'train.epochs: 0'")
    float_keys = [k for k, s in spec_of.items() if s is float or s == (AUTO, float)]
    for k in float_keys:
        flat[k] = float(flat[k])
    return flat


def feature_stride(flat):
    """The stride of the run's pixel features: the backbone's, or that of a method's own network."""
    return methods.spec(flat["method"]).stride or BACKBONES[flat["model.backbone"]]


def _resolve_auto(flat, own_data, source):
    """Replace `auto` by the method's own value or the named dataset's protocol value (its side rounded to a
    multiple of the feature stride: 320 px is 322 for a vision transformer of 14 px patches)."""
    proto = data.protocol(flat["data.name"])
    if flat["data.res"] == AUTO:
        stride = feature_stride(flat)
        flat["data.res"] = max(1, round(proto.res / stride)) * stride
    if flat["data.train_res"] == AUTO:
        flat["data.train_res"] = round(proto.train_scale * flat["data.res"])
    method = methods.spec(flat["method"])
    for key, name in SCHEDULE.items():
        if flat[key] == AUTO:
            flat[key] = method.train.get(name, getattr(proto, name))
    if flat["runtime.inference_batch"] == AUTO:
        flat["runtime.inference_batch"] = flat["train.batch_size"]
    methods.resolve_auto(flat)
    own = method.classifier  # what the method is scored by: its row says
    if flat["model.classifier"] == AUTO:
        flat["model.classifier"] = own
    elif (flat["model.classifier"] == "argmax") != (own == "argmax"):
        why = ("is scored by the argmax of its own assignments" if own == "argmax" else
               "outputs features, not assignments: they are clustered and scored by prototype or linear")
        raise ParamsError(f"{source}: 'model.classifier' is '{flat['model.classifier']}' but method "
                          f"'{flat['method']}' {why}; set 'model.classifier: auto'")
    if flat["cluster.k"] == AUTO:
        flat["cluster.k"] = proto.k if proto.k is not None else data.dataset(flat["data.name"]).auto_k(own_data, source)


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


def recorded_params(p):
    """The params a run's outputs record (the model file, the dump's attributes): all but the runtime
    section, which says where the run computed, not what, so that the same run on another device or
    thread count writes the same record."""
    return {k: v for k, v in as_dict(p).items() if k != "runtime"}
