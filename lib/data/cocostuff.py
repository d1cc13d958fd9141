"""COCO-Stuff 164k: 27 coarse classes (PiCIE), 15 stuff classes and 3 (IIC).

Curation (IIC's "curated" lists, version 7): keep an image when both
of its sides are at least `data.min_side` px and at least `data.stuff_fraction`
of all its pixels belong to the variant's classes (the 15 coarse stuff classes
for cocostuff27 and -15; sky, plant and ground for cocostuff3, whose IIC rule
is unpublished). The kept names are written to `lists/{split}.txt`.

Geometry: cocostuff27 resizes the short side to the side and centre-crops
(PiCIE: 640 for training, 320 for evaluation); cocostuff15/3 scale the image
by 0.33 and centre-crop (IIC: 128 px), padding with ignored pixels where the
scaled image is smaller.
"""
import functools
from pathlib import Path

import numpy as np

from lib.data.base import (AUTHORS_SCHEDULE, IGNORE, DataError, Protocol, load_pair, lookup, map_labels, open_image,
                           require)
from lib.data.stream import parallel_map, write_split
from lib.errors import ParamsError

PROTOCOLS = {
    "cocostuff27": Protocol(res=320, train_scale=2, k=27, **AUTHORS_SCHEDULE),  # PiCIE: 640 px crops, views at 320
    "cocostuff15": Protocol(res=128, train_scale=1.25, k=15, **AUTHORS_SCHEDULE),  # IIC: 0.33 x image, 128 px crops
    "cocostuff3": Protocol(res=128, train_scale=1.25, k=3, **AUTHORS_SCHEDULE),
}
PARAMS = {"min_side": int, "stuff_fraction": float}  # the curation rule's, in the data section
POSITIVE = ("min_side",)
READS = ("images/train2017", "images/val2017", "annotations/train2017", "annotations/val2017")

LAYOUT = """ROOT/images/train2017/<id>.jpg        COCO 2017 images (train2017.zip, val2017.zip)
ROOT/images/val2017/<id>.jpg
ROOT/annotations/train2017/<id>.png   COCO-Stuff stuffthingmaps_trainval2017.zip: uint8 fine ids 0-181, 255 unlabeled
ROOT/annotations/val2017/<id>.png"""

# coarse class -> fine stuffthingmaps ids (the COCO-Stuff project's labels.md; PiCIE's and IIC's
# 27-class table); 0-11 things, 12-26 stuff
COARSE = [
    ("electronic", range(71, 77)), ("appliance", range(77, 83)), ("food-things", range(51, 61)),
    ("furniture-things", range(61, 71)), ("indoor", range(83, 91)), ("kitchen", range(43, 51)),
    ("accessory", range(25, 33)), ("animal", range(15, 25)), ("outdoor", range(9, 15)), ("person", [0]),
    ("sports", range(33, 43)), ("vehicle", range(1, 9)),
    ("ceiling", [101, 102]), ("floor", [100, 113, 114, 115, 116, 117]), ("food-stuff", [120, 121, 152, 169]),
    ("furniture-stuff", [97, 106, 107, 109, 111, 122, 129, 132, 155, 160, 164]),
    ("rawmaterial", [99, 131, 138, 142]),
    ("textile", [91, 92, 103, 104, 108, 130, 136, 140, 151, 166, 167]), ("wall", range(170, 177)),
    ("window", [179, 180]), ("building", [94, 95, 127, 150, 157, 165]),
    ("ground", [110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158]),
    ("plant", [93, 96, 118, 123, 128, 133, 141, 162, 168]), ("sky", [105, 156]),
    ("solid", [126, 134, 149, 159, 161, 181]), ("structural", [98, 112, 137, 145, 163]),
    ("water", [119, 147, 154, 177, 178]),
]
N_FINE = 182
THINGS_27 = list(range(12))
STUFF_27 = list(range(12, 27))
FINE_TO_COARSE = {f: c for c, (_, ids) in enumerate(COARSE) for f in ids}

# variant -> coarse classes it keeps, in class order; the rest is ignored
VARIANTS = {
    "cocostuff27": list(range(27)),
    "cocostuff15": STUFF_27,
    "cocostuff3": [23, 22, 21],  # sky, plant, ground
}
IIC_SCALE = 0.33  # cocostuff15/3: IIC's pre-scaling before the 128 px crop
CURATED = {"cocostuff27": STUFF_27, "cocostuff15": STUFF_27, "cocostuff3": [23, 22, 21]}


def check(data, source):
    if not 0.0 <= data["stuff_fraction"] <= 1.0:
        raise ParamsError(f"{source}: 'data.stuff_fraction' must be a fraction in [0, 1], got {data['stuff_fraction']}")


def fine_to_class(variant):
    """256-entry table: fine id -> class id of the variant (IGNORE elsewhere), and the valid ids."""
    keep = VARIANTS[variant]
    mapping = {f: keep.index(c) for f, c in FINE_TO_COARSE.items() if c in keep}
    return lookup(mapping, list(range(N_FINE)) + [IGNORE], COARSE_TABLE[2])


COARSE_TABLE = lookup(FINE_TO_COARSE, list(range(N_FINE)) + [IGNORE], "COCO-Stuff fine ids (0-181, 255 unlabeled)")


def _curate_one(path, min_side, fraction, counted):
    """(keep, fraction of all pixels in the counted coarse classes) for one stuffthingmaps PNG."""
    lab = open_image(path, "label")
    ids = np.asarray(lab)
    if ids.ndim != 2:
        raise DataError(f"{path}: label must be a single-channel uint8 PNG, got mode {lab.mode}")
    coarse = map_labels(ids, COARSE_TABLE, path)
    hist = np.bincount(coarse.ravel(), minlength=256)
    frac = hist[counted].sum() / ids.size
    return bool(min(lab.size) >= min_side and frac >= fraction), float(frac)


def pairs(root, split):
    """Sorted (image, label) paths of one COCO split (train2017 / val2017)."""
    ann_dir = require(root / "annotations" / split, LAYOUT)
    img_dir = require(root / "images" / split, LAYOUT)
    labels = sorted(ann_dir.glob("*.png"))
    if not labels:
        raise DataError(f"{ann_dir}: no *.png label maps. Expected layout:\n{LAYOUT}")
    out = []
    for lab in labels:
        img = img_dir / f"{lab.stem}.jpg"
        if not img.is_file():
            raise DataError(f"{img}: image not found for label {lab}. Expected layout:\n{LAYOUT}")
        out.append((img, lab))
    return out


def curate(items, variant, min_side, fraction, workers, split):
    fn = functools.partial(_curate_one, min_side=min_side, fraction=fraction, counted=CURATED[variant])
    flags = [keep for keep, _ in parallel_map(fn, [lab for _, lab in items], workers, f"curate {split}")]
    return [it for it, keep in zip(items, flags) if keep]


def prepare(p, out, workers):
    root, variant = Path(p.data.root), p.data.name
    require(root, LAYOUT)
    table = fine_to_class(variant)
    scale = None if variant == "cocostuff27" else IIC_SCALE
    (out / "lists").mkdir()
    splits, counts, stats, names = {}, {}, {}, {}
    for split, coco, side in (("train", "train2017", p.data.train_res), ("val", "val2017", p.data.res)):
        listed = pairs(root, coco)
        kept = curate(listed, variant, p.data.min_side, p.data.stuff_fraction, workers, split)
        if not kept:
            raise DataError(f"{root / 'annotations' / coco}: no image passes the curation rule (both sides >= "
                            f"{p.data.min_side} px, >= {p.data.stuff_fraction:.0%} stuff pixels)")
        names[split] = [img.stem for img, _ in kept]
        (out / "lists" / f"{split}.txt").write_text("\n".join(names[split]) + "\n")
        load = functools.partial(load_pair, side=side, scale=scale, table=table)
        counts[split] = write_split(out, split, kept, load, [1] * len(kept), side, workers).tolist()
        splits[split] = len(kept)
        stats[f"{split}_listed"] = len(listed)
    keep = VARIANTS[variant]
    classes = [COARSE[c][0] for c in keep]
    things = [i for i, c in enumerate(keep) if c in THINGS_27] if variant == "cocostuff27" else []
    stuff = [i for i, c in enumerate(keep) if c in STUFF_27] if variant == "cocostuff27" else []
    return dict(name=variant, root=str(root), classes=classes, things=things, stuff=stuff, labelled=True,
                splits=splits, pixel_counts=counts, stats=stats, names=names)
