"""Tiny datasets in the official on-disk formats, for the loader and pipeline tests.

Each builder writes a few images in the layout of the real download and
returns what the test needs to know about them.
"""
import json

import numpy as np
from PIL import Image

RNG_SEED = 0


def _photo(h, w, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 1, 3))
    return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def cocostuff(root, train, val):
    """COCO 2017 images + stuffthingmaps PNGs. `train`/`val`: {stem: fine-id label array (h, w)}."""
    for split, labels in (("train2017", train), ("val2017", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i, (stem, lab) in enumerate(labels.items()):
            h, w = lab.shape
            Image.fromarray(_photo(h, w, i)).save(root / "images" / split / f"{stem}.jpg", quality=90)
            Image.fromarray(lab.astype(np.uint8)).save(root / "annotations" / split / f"{stem}.png")
    return root


def stuff_label(h, w, stuff_pixels, stuff_id=105, thing_id=0):
    """A fine-id map with exactly `stuff_pixels` pixels of a stuff class (sky), the rest a thing (person)."""
    lab = np.full(h * w, thing_id, dtype=np.uint8)
    lab[:stuff_pixels] = stuff_id
    return lab.reshape(h, w)


def cocostuff_small(root, n_train=6, n_val=4, h=40, w=48):
    """Small curated-passing COCO-Stuff images (use data.min_side <= 40): sky, grass, person."""
    def lab(seed):
        rng = np.random.default_rng(seed)
        out = np.full((h, w), 105, dtype=np.uint8)  # sky (coarse 23)
        out[h // 2:] = 123  # grass (plant, coarse 22)
        y, x = rng.integers(0, h // 2), rng.integers(0, w - 8)
        out[y:y + 6, x:x + 8] = 0  # a small person (coarse 9)
        out[-2:, :5] = 255
        return out
    return cocostuff(root, {f"{i:012d}": lab(i) for i in range(n_train)},
                     {f"{100 + i:012d}": lab(100 + i) for i in range(n_val)})


CITY = {"train": ("aachen", 3), "val": ("frankfurt", 2), "test": ("berlin", 2), "train_extra": ("augsburg", 3)}


def cityscapes(root, h=32, w=64):
    """leftImg8bit/{train,val,test,train_extra} + gtFine/{train,val,test} labelIds, the official names."""
    files = {}
    for k, (split, (city, n)) in enumerate(CITY.items()):
        files[split] = []
        for i in range(n):
            stem = f"{city}_{k:06d}_{i:06d}"
            d = root / "leftImg8bit" / split / city
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_photo(h, w, 10 * k + i)).save(d / f"{stem}_leftImg8bit.png")
            files[split].append(stem)
            if split == "train_extra":
                continue  # only gtCoarse exists for train_extra
            g = root / "gtFine" / split / city
            g.mkdir(parents=True, exist_ok=True)
            lab = np.zeros((h, w), dtype=np.uint8) if split == "test" else cityscapes_label(h, w, i)
            Image.fromarray(lab).save(g / f"{stem}_gtFine_labelIds.png")
    return files


def cityscapes_label(h, w, seed):
    """Every labelId 0..33 in stripes (void 0..6 included), road at the bottom."""
    lab = np.tile(np.arange(34, dtype=np.uint8).repeat(2), w)[: h * w].reshape(h, w)
    lab[-4:] = 7
    return np.roll(lab, seed, axis=1)


def _polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def cocopersons(root, h=40, w=50):
    """COCO images + instances JSON (pycocotools format) with person polygons and one crowd RLE.

    Person fractions: train ids 1 (0.3), 2 (0.05: too little), 3 (0.96: too much),
    4 (0.3 from a crowd RLE), 5 (no person, a dog); val ids 11, 12 (0.3, 0.5).
    """
    from pycocotools import mask as mask_utils

    layout = {"train2017": {1: "box30", 2: "box05", 3: "box96", 4: "crowd30", 5: "dog"},
              "val2017": {11: "box30", 12: "box50"}}
    boxes = {"box30": (0, 0, 20, 30), "box05": (0, 0, 10, 10), "box96": (0, 0, 48, 40), "box50": (0, 0, 25, 40)}
    (root / "annotations").mkdir(parents=True)
    for split, images in layout.items():
        (root / "images" / split).mkdir(parents=True)
        doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                                                               {"id": 18, "name": "dog", "supercategory": "animal"}]}
        for img_id, kind in images.items():
            name = f"{img_id:012d}.jpg"
            Image.fromarray(_photo(h, w, img_id)).save(root / "images" / split / name)
            doc["images"].append({"id": img_id, "file_name": name, "height": h, "width": w})
            ann = {"id": 100 * img_id, "image_id": img_id, "category_id": 1, "iscrowd": 0}
            if kind in boxes:
                x0, y0, x1, y1 = boxes[kind]
                ann.update(segmentation=_polygon(x0, y0, x1, y1), area=float((x1 - x0) * (y1 - y0)),
                           bbox=[x0, y0, x1 - x0, y1 - y0])
            elif kind == "crowd30":
                m = np.zeros((h, w), dtype=np.uint8, order="F")
                m[:, :15] = 1  # 0.3 of a 40 x 50 image
                rle = mask_utils.encode(np.asfortranarray(m))
                counts = [int(c) for c in _rle_counts(m)]
                ann.update(segmentation={"size": [h, w], "counts": counts}, area=float(mask_utils.area(rle)),
                           bbox=[0, 0, 15, h], iscrowd=1)
            else:
                ann.update(category_id=18, segmentation=_polygon(0, 0, 30, 30), area=900.0, bbox=[0, 0, 30, 30])
            doc["annotations"].append(ann)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return layout


def _rle_counts(m):
    """Uncompressed COCO RLE counts (column-major runs, starting with zeros)."""
    flat = m.flatten(order="F")
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            prev, run = v, 0
        run += 1
    counts.append(run)
    return counts


POTSDAM_COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]


def potsdam(root, tiles=("2_10", "2_11", "2_13"), side=800):
    """4_Ortho_RGBIR/*.tif (R, G, B, IR) and 5_Labels_all/*.tif colour labels; class stripes of 100 px."""
    import tifffile

    (root / "4_Ortho_RGBIR").mkdir(parents=True)
    (root / "5_Labels_all").mkdir(parents=True)
    classes = np.tile(np.arange(side) // 100 % 6, (side, 1))  # vertical stripes, class = column band
    colours = np.array(POTSDAM_COLOURS, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        img = np.zeros((side, side, 4), dtype=np.uint8)
        img[..., :3] = colours[classes] // 2 + 20 * k
        img[..., 3] = (classes * 40).astype(np.uint8)
        tifffile.imwrite(root / "4_Ortho_RGBIR" / f"top_potsdam_{tile}_RGBIR.tif", img)
        tifffile.imwrite(root / "5_Labels_all" / f"top_potsdam_{tile}_label.tif", colours[classes])
    return classes
