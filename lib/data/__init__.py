"""Datasets, prepared once into a format the training loop reads fast.

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

from lib.data.base import IGNORE, DataError
from lib.data.cityscapes import prepare_cityscapes
from lib.data.cocopersons import prepare_cocopersons
from lib.data.cocostuff import prepare_cocostuff
from lib.data.folder import prepare_folder
from lib.data.potsdam import prepare_potsdam
from lib.data.stream import n_workers
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
        self.channels = self.meta.get("channels", 3)

    def images(self, split):
        return np.load(self.root / f"{split}_images.npy", mmap_mode="r")

    def labels(self, split):
        """Labels of a split, or None where it has none (unlabelled data, PiCIE's Cityscapes training set)."""
        path = self.root / f"{split}_labels.npy"
        return np.load(path, mmap_mode="r") if self.labelled and path.is_file() else None


def prepare_textures(p, out, workers):
    n_stuff = len(TEXTURE_STUFF)
    counts = {}
    # train and val come from disjoint seed streams; data.seed (not the training
    # seed) fixes them, so `-S seed=1` re-trains on the same data.
    for split, n, side, offset in (("train", p.data.train_size, p.data.train_res, 0),
                                   ("val", p.data.val_size, p.data.res, 1)):
        images, labels = make_split(n, side, 2 * p.data.seed + offset, p.data.imbalance)
        np.save(out / f"{split}_images.npy", images)
        np.save(out / f"{split}_labels.npy", labels)
        counts[split] = np.bincount(labels.ravel(), minlength=256).tolist()
    return dict(name="textures", classes=list(TEXTURE_CLASSES), stuff=list(range(n_stuff)),
                things=list(range(n_stuff, len(TEXTURE_CLASSES))), labelled=True,
                splits={"train": p.data.train_size, "val": p.data.val_size}, pixel_counts=counts, stats={},
                names={})


def _prepare_folder(p, out, workers):
    return prepare_folder(p.data.root, out, p.data.res, p.data.train_res, p.data.val_fraction, p.data.seed, workers)


PREPARERS = {"textures": prepare_textures, "folder": _prepare_folder, "cocostuff27": prepare_cocostuff,
             "cocostuff15": prepare_cocostuff, "cocostuff3": prepare_cocostuff,
             "cityscapes27": prepare_cityscapes, "cocopersons": prepare_cocopersons,
             "potsdam": prepare_potsdam, "potsdam3": prepare_potsdam}


def prepare(p, out):
    """Build the prepared folder `out` (a fresh, empty folder) for params `p`; returns meta."""
    out = Path(out)
    if p.data.name not in PREPARERS:  # config validation lists the names; this guards direct callers
        raise DataError(f"data.name: unknown dataset {p.data.name!r}")
    meta = PREPARERS[p.data.name](p, out, n_workers(p.data.workers))
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
