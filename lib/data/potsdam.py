"""ISPRS Potsdam (IIC; InfoSeg Table 1): RGB + IR, 6 classes or 3 merged.

Each 6000 x 6000 tile is cut into 400 x 400 crops (IIC), resized to the
protocol's side (200: IIC halves them) with 4 channels R, G, B, IR. Training
uses the crops of the 24 tiles of the official ISPRS training set, evaluation
those of the 14 official test tiles (`VAL_TILES`), so no evaluated pixel is
seen in training.

Labels are colour-coded RGB tiles; each channel is thresholded at 128 (robust
to compression noise), black (the boundary class of `*_noBoundary` files) is
ignored, and any other colour is an error naming the file.
"""
import functools
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.base import AUTHORS_SCHEDULE, IGNORE, DataError, Protocol, require
from lib.data.stream import write_split

# IIC: 400 px crops halved to 200
PROTOCOLS = {"potsdam": Protocol(res=200, train_scale=1, k=6, **AUTHORS_SCHEDULE),
             "potsdam3": Protocol(res=200, train_scale=1, k=3, **AUTHORS_SCHEDULE)}
READS = ("4_Ortho_RGBIR", "5_Labels_all")

LAYOUT = """ROOT/4_Ortho_RGBIR/top_potsdam_<a>_<b>_RGBIR.tif   4_Ortho_RGBIR.zip: uint8 R, G, B, IR tiles
ROOT/5_Labels_all/top_potsdam_<a>_<b>_label.tif    5_Labels_all.zip: colour-coded class tiles"""
CROP = 400
CLASSES = ["roads", "buildings", "low_vegetation", "tree", "car", "clutter"]
# (R, G, B) > 127 -> class: impervious surfaces (white), building (blue), low vegetation (cyan),
# tree (green), car (yellow), clutter (red)
COLOURS = {(1, 1, 1): 0, (0, 0, 1): 1, (0, 1, 1): 2, (0, 1, 0): 3, (1, 1, 0): 4, (1, 0, 0): 5}
MERGE3 = {0: 0, 4: 0, 1: 1, 5: 1, 2: 2, 3: 2}  # {roads, car}, {buildings, clutter}, {low vegetation, tree}
CLASSES3 = ["roads_and_cars", "buildings_and_clutter", "vegetation"]
VAL_TILES = ("2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13",
             "6_14", "6_15", "7_13")


def colour_table(merge):
    lut = np.full(8, IGNORE, dtype=np.uint8)
    for (r, g, b), c in COLOURS.items():
        lut[r * 4 + g * 2 + b] = MERGE3[c] if merge else c
    valid = np.zeros(8, dtype=bool)
    valid[[r * 4 + g * 2 + b for r, g, b in COLOURS] + [0]] = True  # 0: black boundary, ignored
    return lut, valid


def decode_labels(rgb, path, merge):
    # uint8 throughout: a 6000 x 6000 tile in int64 would cost 288 MB per array
    code = ((rgb[..., 0] > 127).astype(np.uint8) << 2) | ((rgb[..., 1] > 127).astype(np.uint8) << 1)
    code |= (rgb[..., 2] > 127).astype(np.uint8)
    lut, valid = colour_table(merge)
    present = np.flatnonzero(np.bincount(code.ravel(), minlength=8))
    bad = present[~valid[present]]
    if bad.size:
        c = int(bad[0])
        raise DataError(f"{path}: colour ({255 * (c >> 2)}, {255 * (c >> 1 & 1)}, {255 * (c & 1)}) is not "
                        f"a Potsdam class colour")
    return lut[code]


def _read_tif(path, channels):
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception as e:
        raise DataError(f"{path}: cannot read this tile ({type(e).__name__}: {e})") from None
    if arr.ndim != 3 or arr.shape[-1] != channels or arr.dtype != np.uint8:
        raise DataError(f"{path}: expected a uint8 tile with {channels} channels, got {arr.dtype} {arr.shape}")
    return arr


def tile_shape(path):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].shape[:2]
    except Exception as e:
        raise DataError(f"{path}: cannot read this tile ({type(e).__name__}: {e})") from None


def _resize(arr, side, resample):
    """Resize each channel of a uint8 (h, w[, c]) array (PIL has no 4-channel non-alpha mode)."""
    if arr.shape[0] == side:
        return arr
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(arr).resize((side, side), resample))
    return np.stack([_resize(arr[..., c], side, resample) for c in range(arr.shape[-1])], -1)


def _load_tile(item, side, merge):
    """All CROP x CROP crops of one tile, row by row, resized to side."""
    img_path, lab_path = item
    image = _read_tif(img_path, 4)
    labels = decode_labels(_read_tif(lab_path, 3), lab_path, merge)
    if labels.shape != image.shape[:2]:
        raise DataError(f"{lab_path}: label tile is {labels.shape[1]}x{labels.shape[0]} but {img_path} "
                        f"is {image.shape[1]}x{image.shape[0]}")
    rows, cols = image.shape[0] // CROP, image.shape[1] // CROP
    ims, labs = [], []
    for i in range(rows):
        for j in range(cols):
            win = np.s_[i * CROP:(i + 1) * CROP, j * CROP:(j + 1) * CROP]
            ims.append(_resize(image[win], side, Image.BILINEAR))
            labs.append(_resize(labels[win], side, Image.NEAREST))
    return np.stack(ims), np.stack(labs)


def tiles(root):
    img_dir = require(root / "4_Ortho_RGBIR", LAYOUT)
    found = sorted(img_dir.glob("top_potsdam_*_RGBIR.tif"))
    if not found:
        raise DataError(f"{img_dir}: no top_potsdam_*_RGBIR.tif tiles. Expected layout:\n{LAYOUT}")
    out = {}
    for img in found:
        tile = img.name[len("top_potsdam_"): -len("_RGBIR.tif")]
        lab = root / "5_Labels_all" / f"top_potsdam_{tile}_label.tif"
        if not lab.is_file():
            raise DataError(f"{lab}: label tile not found for {img}. Expected layout:\n{LAYOUT}")
        out[tile] = (img, lab)
    return out


def prepare(p, out, workers):
    root = require(Path(p.data.root), LAYOUT)
    merge = p.data.name == "potsdam3"
    found = tiles(root)
    parts = {"train": [t for t in found if t not in VAL_TILES], "val": [t for t in found if t in VAL_TILES]}
    splits, counts, names = {}, {}, {}
    for split, side in (("train", p.data.train_res), ("val", p.data.res)):
        if not parts[split]:
            raise DataError(f"{root / '4_Ortho_RGBIR'}: no {split} tile (evaluation tiles: "
                            f"{', '.join(VAL_TILES)})")
        n = []
        for t in parts[split]:
            h, w = tile_shape(found[t][0])
            if h < CROP or w < CROP:
                raise DataError(f"{found[t][0]}: tile is {w}x{h}, smaller than one {CROP} px crop")
            n.append((h // CROP) * (w // CROP))
        load = functools.partial(_load_tile, side=side, merge=merge)
        hist = write_split(out, split, [found[t] for t in parts[split]], load, n, side, workers, channels=4)
        counts[split], splits[split] = hist.tolist(), sum(n)
        names[split] = [f"{t}_{k}" for t, m in zip(parts[split], n) for k in range(m)]
    return dict(name=p.data.name, root=str(root), classes=CLASSES3 if merge else CLASSES, things=[], stuff=[],
                labelled=True, channels=4, splits=splits, pixel_counts=counts,
                stats={"train_tiles": len(parts["train"]), "val_tiles": len(parts["val"])}, names=names)
