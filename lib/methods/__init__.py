"""The methods, by the name `method` gives: one module each, holding what makes it itself.

| method  | module                  | what it trains                               | scored by (model.classifier: auto) |
|---------|-------------------------|----------------------------------------------|------------------------------------|
| picie   | lib/methods/picie.py    | backbone + FPN, two views, Eq. 10-15         | prototype (nearest k-means centroid) |
| mdc     | lib/methods/mdc.py      | backbone + FPN, one view, linear head        | linear (fitted on k-means labels)  |
| iic     | lib/methods/iic.py      | backbone + FPN + cluster heads, MI of views  | argmax (its own main head)         |
| infoseg | lib/methods/infoseg.py  | InfoSeg's network (random init), its 2 steps | argmax (its own Eq. 4)            |
| notrain | lib/methods/notrain.py  | nothing: the initial network                  | prototype                         |

What several methods share lives beside them: the views and their forward
pass (lib/views), the clustering epoch (lib/deepcluster), the batch loop
(lib/loop), the feature network (lib/models).

A method module defines:
- LABEL: its name in tables and the report;
- CLASSIFIER: what `model.classifier: auto` resolves to (prototype | linear |
  argmax; argmax for a network that outputs its own assignments);
- build(p, in_chans) -> the network it trains (forward: what is dumped and
  scored; embed: the pixel features under any heads, `dim` channels);
- train_one_epoch(model, images, optimizer, p, g, device, epoch) -> (mean
  losses, seconds per phase); a method without it is never trained;
- describe(params) -> the report's lines on the run;
- optionally TRAIN (its own train.lr / train.batch_size for `auto`), PARAMS
  and POSITIVE (the schema of its own params section, named as the method),
  and from_arch(arch) (for a network of its own, whose arch kind is the
  method's name).

Adding a method: one module here and its name in NAMES. Modules are imported
by name when asked for (`get`), so that reading params.yaml (every stage
does) does not make every stage depend, for DVC, on every method's code.
"""
import importlib

from lib.errors import ParamsError

NAMES = ("picie", "mdc", "iic", "infoseg", "notrain")


def get(name):
    """The module of the method called `name`."""
    if name not in NAMES:
        raise ParamsError(f"'method' is {name!r}; expected one of {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")


def trains(name):
    return hasattr(get(name), "train_one_epoch")


def epochs(p):
    """Training epochs of the run's method: none for a method that does not train."""
    return p.train.epochs if trains(p.method) else 0


def build(p, in_chans=3):
    """The network the run's method trains, initialised as params say (channels-last: lib/models)."""
    from lib.models import channels_last  # here: reading params (lib/config) must not import the networks
    return channels_last(get(p.method).build(p, in_chans))


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    return get(p.method).train_one_epoch(model, images, optimizer, p, g, device, epoch)


def label(name, classifier=None):
    """A run's row label: the method's LABEL, and the classifier it is scored by when that is not
    the method's own (e.g. 'No Train / linear')."""
    method = get(name)
    return method.LABEL if classifier in (None, "auto", method.CLASSIFIER) else f"{method.LABEL} / {classifier}"
