"""COCO-Persons (InfoSeg): person vs non-person on COCO images that show people.

InfoSeg's selection rule is unpublished (15,399 images); ours, from the
instances annotations read with pycocotools: an image is kept when the union
of its person masks (crowd regions included) covers between
`data.person_min_fraction` and `data.person_max_fraction` of the image, so
that both classes are present. Labels: 0 non-person, 1 person. Training uses
train2017, evaluation val2017; images are resized (short side) and
centre-cropped to 128 px.
"""
import functools
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.base import AUTHORS_SCHEDULE, DataError, Protocol, open_image, require, square, to_rgb
from lib.data.stream import parallel_map, write_split
from lib.errors import ParamsError

PROTOCOLS = {"cocopersons": Protocol(res=128, train_scale=1, k=2, **AUTHORS_SCHEDULE)}  # InfoSeg: 128 x 128
# the selection rule's thresholds, in the data section
PARAMS = {"person_min_fraction": float, "person_max_fraction": float}
READS = ("images/train2017", "images/val2017", "annotations/instances_train2017.json",
         "annotations/instances_val2017.json")

LAYOUT = """ROOT/images/train2017/<file_name>.jpg            COCO 2017 images (train2017.zip, val2017.zip)
ROOT/images/val2017/<file_name>.jpg
ROOT/annotations/instances_train2017.json        annotations_trainval2017.zip
ROOT/annotations/instances_val2017.json"""
CLASSES = ["non-person", "person"]


def check(data, source):
    for key in ("person_min_fraction", "person_max_fraction"):
        if not 0.0 <= data[key] <= 1.0:
            raise ParamsError(f"{source}: 'data.{key}' must be a fraction in [0, 1], got {data[key]}")
    if data["person_min_fraction"] > data["person_max_fraction"]:
        raise ParamsError(f"{source}: 'data.person_min_fraction' is above 'data.person_max_fraction'")


def person_records(ann_path):
    """[(file name, height, width, [person segmentations])] for images with a person, via pycocotools."""
    from pycocotools.coco import COCO

    try:
        coco = COCO(str(ann_path))
    except Exception as e:
        raise DataError(f"{ann_path}: not a COCO instances file pycocotools can read "
                        f"({type(e).__name__}: {e})") from None
    cats = coco.getCatIds(catNms=["person"])
    if not cats:
        raise DataError(f"{ann_path}: has no 'person' category")
    records = []
    for img_id in sorted(coco.getImgIds(catIds=cats)):
        info = coco.loadImgs(img_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, catIds=cats, iscrowd=None))
        records.append((info["file_name"], info["height"], info["width"], [a["segmentation"] for a in anns]))
    return records


def person_mask(record):
    """uint8 (h, w) union of the person masks of one record (polygons or RLE)."""
    from pycocotools import mask as mask_utils

    _, h, w, segs = record
    mask = np.zeros((h, w), dtype=np.uint8)
    for seg in segs:
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE (crowd)
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        mask |= mask_utils.decode(rle).astype(np.uint8)
    return mask


def _fraction(record):
    return float(person_mask(record).mean())


def _load(record, img_dir, side):
    path = img_dir / record[0]
    im = open_image(path)
    if im.size != (record[2], record[1]):
        raise DataError(f"{path}: image is {im.size[0]}x{im.size[1]} but the annotations say "
                        f"{record[2]}x{record[1]}")
    image = np.asarray(square(to_rgb(im, path), side, Image.BILINEAR))
    label = np.asarray(square(Image.fromarray(person_mask(record)), side, Image.NEAREST))
    return image[None], label[None]


def prepare(p, out, workers):
    root = require(Path(p.data.root), LAYOUT)
    (out / "lists").mkdir()
    splits, counts, stats, names = {}, {}, {}, {}
    for split, coco, side in (("train", "train2017", p.data.train_res), ("val", "val2017", p.data.res)):
        ann = require(root / "annotations" / f"instances_{coco}.json", LAYOUT, kind="file")
        img_dir = require(root / "images" / coco, LAYOUT)
        records = person_records(ann)
        fracs = list(parallel_map(_fraction, records, workers, f"select {split}"))
        kept = [r for r, f in zip(records, fracs) if p.data.person_min_fraction <= f <= p.data.person_max_fraction]
        if not kept:
            raise DataError(f"{ann}: no image has person pixels covering {p.data.person_min_fraction:.0%}-"
                            f"{p.data.person_max_fraction:.0%} of it (data.person_min/max_fraction)")
        for r in kept:
            if not (img_dir / r[0]).is_file():
                raise DataError(f"{img_dir / r[0]}: image listed in {ann} not found. Expected layout:\n{LAYOUT}")
        names[split] = [r[0] for r in kept]
        (out / "lists" / f"{split}.txt").write_text("\n".join(names[split]) + "\n")
        load = functools.partial(_load, img_dir=img_dir, side=side)
        counts[split] = write_split(out, split, kept, load, [1] * len(kept), side, workers).tolist()
        splits[split] = len(kept)
        stats[f"{split}_with_persons"] = len(records)
    return dict(name="cocopersons", root=str(root), classes=CLASSES, things=[1], stuff=[0], labelled=True,
                splits=splits, pixel_counts=counts, stats=stats, names=names)
