"""Datasets, prepared once into a format the training loop reads fast.

Every dataset is prepared into one folder:

    meta.json             name, classes, things/stuff ids, res, split sizes, image names
    train_images.npy      uint8 (N, res, res, 3), memory-mapped at read time
    val_images.npy
    train_labels.npy      uint8 (N, res, res), 255 = ignore (only if labelled)
    val_labels.npy

so that a training batch is one fancy-indexing read, with no decoding.
"""
import json
from pathlib import Path

import numpy as np

from lib.data.base import IGNORE, DataError
from lib.data.folder import prepare_folder
from lib.data.textures import CLASSES as TEXTURE_CLASSES
from lib.data.textures import STUFF as TEXTURE_STUFF
from lib.data.textures import make_split

__all__ = ["IGNORE", "DataError", "Prepared", "prepare", "pixel_stats"]


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

    def images(self, split):
        return np.load(self.root / f"{split}_images.npy", mmap_mode="r")

    def labels(self, split):
        return np.load(self.root / f"{split}_labels.npy", mmap_mode="r") if self.labelled else None


def write_split(out, split, images, labels=None):
    np.save(out / f"{split}_images.npy", images)
    if labels is not None:
        np.save(out / f"{split}_labels.npy", labels)


def prepare_textures(p, out):
    n_stuff = len(TEXTURE_STUFF)
    # train and val come from disjoint seed streams; data.seed (not the training
    # seed) fixes them, so `-S seed=1` re-trains on the same data.
    for split, n, offset in (("train", p.data.train_size, 0), ("val", p.data.val_size, 1)):
        images, labels = make_split(n, p.data.res, 2 * p.data.seed + offset)
        write_split(out, split, images, labels)
    return dict(name="textures", classes=list(TEXTURE_CLASSES), stuff=list(range(n_stuff)),
                things=list(range(n_stuff, len(TEXTURE_CLASSES))), res=p.data.res, labelled=True,
                splits={"train": p.data.train_size, "val": p.data.val_size}, names={})


def prepare(p, out):
    """Build the prepared folder `out` (a fresh, empty folder) for params `p`; returns meta."""
    out = Path(out)
    if p.data.name == "textures":
        meta = prepare_textures(p, out)
    elif p.data.name == "folder":
        meta = prepare_folder(p.data.root, out, p.data.res, p.data.val_fraction, p.data.seed)
    else:  # config validation lists the names; this guards direct callers
        raise DataError(f"data.name: unknown dataset {p.data.name!r}")
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def pixel_stats(prepared):
    """Images per split and pixel frequency per class: flat, for `dvc metrics`."""
    stats = {f"{s}_images": int(n) for s, n in prepared.meta["splits"].items()}
    if prepared.labelled:
        counts = np.zeros(256, dtype=np.int64)
        for split in prepared.meta["splits"]:
            lab = prepared.labels(split)
            for i in range(0, len(lab), 256):
                counts += np.bincount(np.asarray(lab[i:i + 256]).ravel(), minlength=256)
        total = counts[: len(prepared.classes)].sum()
        for c, name in enumerate(prepared.classes):
            stats[f"freq_{name}"] = round(float(counts[c] / max(total, 1)), 6)
        stats["ignored_fraction"] = round(float(counts[IGNORE] / max(counts.sum(), 1)), 6)
    return stats
