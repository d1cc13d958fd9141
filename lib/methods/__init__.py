"""The methods, by the name `method` gives: one module each for the code, one row each in METHODS for
what params.yaml must know of it.

| method  | module          | what it trains                               | scored by (model.classifier: auto)   |
|---------|-----------------|----------------------------------------------|--------------------------------------|
| picie   | picie.py        | backbone + FPN, two views, Eq. 10-15         | prototype (nearest k-means centroid) |
| mdc     | mdc.py          | backbone + FPN, one view, linear head        | linear (fitted on k-means labels)    |
| iic     | iic.py          | backbone + FPN + cluster heads, MI of views  | argmax (its own main head)           |
| infoseg | infoseg.py      | InfoSeg's network (random init), its 2 steps | argmax (its own Eq. 4)               |
| notrain | notrain.py      | nothing: the initial network                 | prototype                            |
| stego   | stego.py        | a head on the frozen backbone, STEGO's loss  | argmax (its cluster probe)           |

What several methods share lives beside them: the views and their forward
pass (lib/views), the clustering epoch (lib/deepcluster), the batch loop
(lib/loop), the feature network (lib/models).

A method's row (`Method`) is what validating params.yaml and the stages need
to know of it: its label, the classifier `auto` resolves to, whether it
trains, its own `auto` training values, the schema of its own params
section, and its rules (a network of its own and its stride, a frozen
backbone, neighbours from the knn stage). The rows import nothing:
every stage reads params.yaml, and the fingerprint stage, which DVC runs on
every `dvc repro`, must not start torch to do so. Its module, imported by
name when asked for (`get`), holds the code:
- build(p, in_chans) -> the network it trains (forward: what is dumped and
  scored; embed: the pixel features under any heads, `dim` channels);
- train_one_epoch(model, images, optimizer, p, g, device, epoch) -> (mean
  losses, seconds per phase), where its row says it trains (with `labels`
  and `neighbours` keywords where its row says it pairs neighbours);
- describe(params) -> the report's lines on the run;
- optionally from_arch(arch) (for a network of its own, whose arch kind is
  the method's name), param_groups(model, p) (the optimiser's groups, where
  they differ from "everything that trains, at train.lr"), and, where its
  row says so, neighbours(model, images, p, device, frozen) (the knn stage's table); where its row keeps
  the backbone frozen, frozen_sources(prepared, p) (what the frozen stage caches the trunk's features of,
  {"train": ..., "val": ...}), and train_one_epoch takes that cache as `frozen`.

Adding a method: its module here and its row in METHODS (plus its params
section, if any, in params.yaml and the train stage's params in dvc.yaml).
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional

from lib.errors import ParamsError
from lib.methods import stego_settings


@dataclass(frozen=True)
class Method:
    label: str  # its name in tables and the report
    classifier: str  # what `model.classifier: auto` resolves to: prototype | linear | argmax (own assignments)
    trains: bool = True  # False: the train stage saves the initial network (its module has no train_one_epoch)
    train: dict = field(default_factory=dict)  # its own `auto` values: lr, batch_size (before the dataset's)
    params: dict = field(default_factory=dict)  # the schema of its own params section, named as the method
    positive: tuple = ()  # keys of that section that must be > 0 (its other numbers must be >= 0)
    fractions: tuple = ()  # keys of that section that are shares of something: in (0, 1]
    stride: int = 0  # a network of its own that ignores model.backbone: the stride of its features
    frozen: bool = False  # its rule: the backbone is never trained (whatever model.freeze says)
    neighbours: bool = False  # it pairs images with their nearest neighbours, which the knn stage computes
    outputs: str = "features"  # what its network gives: features | probabilities | cosines (lib/scoring.py)
    # resolve(flat) replaces the `auto` values of its own section that depend on the data or the backbone
    resolve: Optional[Callable] = None


METHODS = {
    "picie": Method("PiCIE", "prototype"),
    "mdc": Method("Modified DeepCluster", "linear"),
    "iic": Method("IIC", "argmax", outputs="probabilities",
                  params={"k_over": int, "displacement": int, "heads": ("alternate", "sum")}),
    # InfoSeg Sec. 5.1: lr 1e-4, batch 64
    "infoseg": Method("InfoSeg", "argmax", train=dict(lr=1e-4, batch_size=64), outputs="probabilities",
                      params={"dim": int, "width": int, "tau": float, "bound": ("jsd", "dv"),
                              "assignment": ("soft", "hard"), "objective": ("mi", "iic")},
                      positive=("dim", "width", "tau"), stride=4),
    "notrain": Method("No Train", "prototype", trains=False),
    # STEGO's configuration: lr 5e-4, batch 16 (per GPU there: the whole batch here)
    "stego": Method("STEGO", "argmax", train=dict(lr=5e-4, batch_size=16), frozen=True, neighbours=True,
                    outputs="cosines",
                    params={"dim": int, "knn": int, "pairs": ("knn", "random"), "crop_ratio": float, "samples": int,
                            "negatives": int, "probe_lr": float, "stabilize": bool,
                            **{key: ("auto", float) for key in stego_settings.KEYS}},
                    resolve=stego_settings.resolve,
                    positive=("dim", "knn", "crop_ratio", "samples", "negatives", "probe_lr"),
                    fractions=("crop_ratio",)),
}
NAMES = tuple(METHODS)


def spec(name):
    """The row of the method called `name`."""
    if name not in METHODS:
        raise ParamsError(f"'method' is {name!r}; expected one of {', '.join(NAMES)}")
    return METHODS[name]


def get(name):
    """The module of the method called `name`."""
    spec(name)
    return importlib.import_module(f"{__name__}.{name}")


def trains(name):
    return spec(name).trains


def epochs(p):
    """Training epochs of the run's method: none for a method that does not train."""
    return p.train.epochs if trains(p.method) else 0


def build(p, in_chans=3):
    """The network the run's method trains, initialised as params say (channels-last: lib/models), its
    backbone frozen where model.freeze or the method's rule says."""
    from lib.models import channels_last, freeze  # here: reading params (lib/config) must not import torch

    net = get(p.method).build(p, in_chans)
    return channels_last(freeze(net) if frozen(p) else net)


def resolve_auto(flat):
    """Each method's `auto` values that follow from the data and the backbone (its row's `resolve`), in flat
    params: every method's section, in use or not, as every one is validated."""
    for row in METHODS.values():
        if row.resolve:
            row.resolve(flat)
    return flat


def build_unseeded(p, in_chans=3):
    """The run's network for a stage that does not list the seed (knn, frozen), built from seed 0: a
    random-init trunk is then the same for every seed, and only the frozen trunk's weights count there."""
    import torch

    torch.manual_seed(0)
    return build(p, in_chans)


def frozen(p):
    """Whether the run trains nothing of its backbone."""
    return p.model.freeze or spec(p.method).frozen


def cached(p):
    """Whether the run reads the frozen stage's cache of its backbone's features instead of running the
    backbone: a method whose rule keeps the backbone frozen (its row's `frozen`; model.freeze alone does
    not: PiCIE's views are new every step), where frozen.cache says so."""
    return spec(p.method).frozen and p.frozen.cache


def train_one_epoch(model, images, optimizer, p, g, device, epoch, **context):
    """One epoch of the run's method; `context`: what a method's row says it needs beyond the images (the
    training labels and the knn stage's neighbours, for STEGO)."""
    return get(p.method).train_one_epoch(model, images, optimizer, p, g, device, epoch, **context)


def param_groups(model, p):
    """The optimiser's parameter groups: the module's own (e.g. STEGO's probes at their own rate), else every
    parameter that trains, at train.lr."""
    own = getattr(get(p.method), "param_groups", None)
    return own(model, p) if own else [{"params": [q for q in model.parameters() if q.requires_grad]}]


def label(name, classifier=None):
    """A run's row label: the method's label, and the classifier it is scored by when that is not
    the method's own (e.g. 'No Train / linear')."""
    method = spec(name)
    return method.label if classifier in (None, "auto", method.classifier) else f"{method.label} / {classifier}"
