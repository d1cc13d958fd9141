"""Datasets, registered by the name `data.name` gives, and prepared once into a format the training
loop reads fast.

A dataset is one module (lib/data/<module>.py) that holds what makes it itself:
- PROTOCOLS: {data.name: Protocol} for each name it serves, what `auto` params resolve to
  (lib/data/base.Protocol: sides, classes, training schedule; whether it reads data.root);
- READS: the paths under data.root it reads, which the fingerprint stage lists (or reads(data), where
  they depend on its params, as Cityscapes' split);
- prepare(p, out, workers) -> meta: the prepared folder below, built from params `p`;
- optionally PARAMS and POSITIVE (the schema of its own keys of the data section, e.g. the
  curation rule's), check(data, source) (their ranges, raising ParamsError), and auto_k(data,
  source) where its protocol's k is None (the classes are read from the data).
DATASETS maps every name to its module: adding a dataset is its module, its row there, a fixture
in the official on-disk layout (tests/fixtures.py) and a test of its preparation.

Every dataset is prepared into one folder:

    meta.json             name, classes, things/stuff ids, sides, channels, split sizes,
                          label pixel counts, image names
    train_images.npy      uint8 (N, train_res, train_res, C), memory-mapped at read time
    val_images.npy        uint8 (N, res, res, C); C = 3 (RGB) or 4 (Potsdam's RGB + IR)
    train_labels.npy      uint8 (N, train_res, train_res), 255 = ignore (where the split has labels)
    val_labels.npy        uint8 (N, res, res)
    lists/{split}.txt     the selected image names, for curated datasets

so that a training batch is one fancy-indexing read, with no decoding.
"""
import json
from pathlib import Path

import numpy as np

from lib.data import cityscapes, cocopersons, cocostuff, folder, potsdam, textures
from lib.data.base import IGNORE, DataError
from lib.errors import ParamsError

__all__ = ["IGNORE", "DataError", "DATASETS", "MODULES", "dataset", "protocol", "reads", "Prepared", "prepare", "pixel_stats"]

DATASETS = {
    "textures": textures,  # the embedded default, made offline from scikit-image's photographs
    "folder": folder,  # the user's own images
    "cocostuff27": cocostuff, "cocostuff15": cocostuff, "cocostuff3": cocostuff,
    "cityscapes27": cityscapes,
    "cocopersons": cocopersons,
    "potsdam": potsdam, "potsdam3": potsdam,
}
MODULES = tuple(dict.fromkeys(DATASETS.values()))  # each module once


def dataset(name):
    """The module of the dataset called `name`."""
    if name not in DATASETS:
        raise ParamsError(f"'data.name' is {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def protocol(name):
    return dataset(name).PROTOCOLS[name]


def reads(data):
    """The paths under data.root that the dataset of the data section `data` (a dict) reads."""
    module = dataset(data["name"])
    return module.reads(data) if hasattr(module, "reads") else module.READS


class Prepared:
    def __init__(self, root):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: not found; run the prepare stage first (dvc repro prepare)")
        self.meta = json.loads(meta_path.read_text())
        self.classes = self.meta["classes"]
        self.things = self.meta["things"]
        self.stuff = self.meta["stuff"]
        self.labelled = self.meta["labelled"]
        self.channels = self.meta.get("channels", 3)

    def images(self, split):
        return np.load(self.root / f"{split}_images.npy", mmap_mode="r")

    def labels(self, split):
        """Labels of a split, or None where it has none (unlabelled data, PiCIE's Cityscapes training set)."""
        path = self.root / f"{split}_labels.npy"
        return np.load(path, mmap_mode="r") if self.labelled and path.is_file() else None


def prepare(p, out, workers=1):
    """Build the prepared folder `out` (a fresh, empty folder) for params `p` in `workers` processes (the
    folder is the same for any count); returns meta."""
    out = Path(out)
    meta = dataset(p.data.name).prepare(p, out, workers)
    meta = {"res": p.data.res, "train_res": p.data.train_res, "channels": 3, **meta}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def pixel_stats(prepared):
    """Images per split, the loader's own counts, and pixel frequency per class: flat, for `dvc metrics`."""
    meta = prepared.meta
    stats = {f"{s}_images": int(n) for s, n in meta["splits"].items()}
    stats.update(meta.get("stats", {}))
    counts = np.zeros(256, dtype=np.int64)
    for split_counts in meta.get("pixel_counts", {}).values():
        counts += np.asarray(split_counts, dtype=np.int64)
    if prepared.labelled and counts.sum():
        total = counts[: len(prepared.classes)].sum()
        for c, name in enumerate(prepared.classes):
            stats[f"freq_{name}"] = round(float(counts[c] / max(total, 1)), 6)
        stats["ignored_fraction"] = round(float(counts[IGNORE] / max(counts.sum(), 1)), 6)
    return stats
