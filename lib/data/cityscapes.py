"""Cityscapes-27 (PiCIE Table 3): gtFine labelIds 7..33 -> classes 0..26, the void group ignored.

Class names and the things/stuff split (`hasInstances`) come from the
official label table of the `cityscapesscripts` package.

data.split:
  picie     train on leftImg8bit train_extra + test (unlabelled, 21,523 images),
            evaluate on train + val with gtFine (3,475 images): the PiCIE split
  standard  train on train (2,975, gtFine kept for the probe), evaluate on val (500): STEGO's
"""
import functools
from pathlib import Path

from lib.data.base import AUTHORS_SCHEDULE, IGNORE, DataError, Protocol, load_pair, lookup, require
from lib.data.stream import write_split

# PiCIE's authors: views at 320 from 640 px crops, lr 1e-3
PROTOCOLS = {"cityscapes27": Protocol(res=320, train_scale=2, k=27, **{**AUTHORS_SCHEDULE, "lr": 1e-3})}
PARAMS = {"split": ("picie", "standard")}

LAYOUT = """ROOT/leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
                   (leftImg8bit_trainvaltest.zip; train_extra from leftImg8bit_trainextra.zip)
ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (gtFine_trainvaltest.zip)"""

FIRST, LAST = 7, 33  # labelIds kept: 7 (road) .. 33 (bicycle)
SPLITS = {"picie": {"train": ("train_extra", "test"), "val": ("train", "val")},
          "standard": {"train": ("train",), "val": ("val",)}}


def reads(data):
    """The leftImg8bit folders of both splits, and the gtFine folders of their labelled ones."""
    split_of = SPLITS[data["split"]]
    return tuple(f"{kind}/{folder}" for kind in ("leftImg8bit", "gtFine") for split in ("train", "val")
                 for folder in split_of[split] if kind == "leftImg8bit" or _labelled(split, data["split"]))


def _labelled(split, data_split):
    # PiCIE's training folders have no gtFine (train_extra has none, test's are blank)
    return split == "val" or data_split == "standard"


def label_table():
    """labelIds -> classes: 7..33 -> 0..26; 0..6 (void) and 255 (license plate, -1) ignored."""
    from cityscapesscripts.helpers.labels import labels

    official = {lab.id: lab for lab in labels if FIRST <= lab.id <= LAST}
    classes = [official[i].name.replace(" ", "_") for i in range(FIRST, LAST + 1)]
    things = [i - FIRST for i in range(FIRST, LAST + 1) if official[i].hasInstances]
    table = lookup({i: i - FIRST for i in range(FIRST, LAST + 1)}, list(range(LAST + 1)) + [IGNORE],
                   "Cityscapes labelIds (0-33)")
    return table, classes, things


def items(root, folders, labelled):
    """Sorted (image, label or None) paths of the given leftImg8bit folders."""
    out = []
    for folder in folders:
        img_dir = require(root / "leftImg8bit" / folder, LAYOUT)
        images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise DataError(f"{img_dir}: no <city>/*_leftImg8bit.png images. Expected layout:\n{LAYOUT}")
        for img in images:
            lab = None
            if labelled:
                stem = img.name[: -len("_leftImg8bit.png")]
                lab = root / "gtFine" / folder / img.parent.name / f"{stem}_gtFine_labelIds.png"
                if not lab.is_file():
                    raise DataError(f"{lab}: gtFine label not found for {img}. Expected layout:\n{LAYOUT}")
            out.append((img, lab))
    return out


def prepare(p, out, workers):
    root = require(Path(p.data.root), LAYOUT)
    table, classes, things = label_table()
    splits, counts, names = {}, {}, {}
    for split, side in (("train", p.data.train_res), ("val", p.data.res)):
        folders = SPLITS[p.data.split][split]
        labelled = _labelled(split, p.data.split)
        pairs = items(root, folders, labelled)
        load = functools.partial(load_pair, side=side, table=table)
        hist = write_split(out, split, pairs, load, [1] * len(pairs), side, workers, labelled=labelled)
        if hist is not None:
            counts[split] = hist.tolist()
        splits[split] = len(pairs)
        names[split] = [img.name for img, _ in pairs]
    stuff = [c for c in range(len(classes)) if c not in things]
    return dict(name="cityscapes27", root=str(root), split=p.data.split, classes=classes, things=things,
                stuff=stuff, labelled=True, splits=splits, pixel_counts=counts, stats={}, names=names)
