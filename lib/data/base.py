"""What every dataset loader shares: the protocol a dataset declares, the ignore id, resizing to the
protocol's square, label look-up tables with range checks, and layout errors."""
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lib.errors import DataError

IGNORE = 255  # label value of unlabelled pixels, in every dataset

__all__ = ["Protocol", "AUTHORS_SCHEDULE", "EMBEDDED_SCHEDULE", "IGNORE", "DataError", "square", "lookup",
           "map_labels", "open_image", "to_rgb", "require", "load_pair"]
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # Pillow's modes of a 16-bit single-channel image


@dataclass(frozen=True)
class Protocol:
    """What a dataset's `auto` params resolve to (a method's own training values come first).

    res: the evaluation side and the side of the views the network sees; train_scale: the side of the
    stored training images (the views are cropped from them) as a multiple of res; k: the classes
    (None: the data say, e.g. a folder's classes.txt); then the training schedule: train.lr,
    train.epochs, train.batch_size and cluster.images (the images clustered each epoch)."""
    res: int
    train_scale: float
    k: int | None
    lr: float
    epochs: int
    batch_size: int
    cluster_images: int
    root: bool = True  # whether it reads data.root (the embedded set is made from params alone)


# PiCIE's authors published COCO-Stuff-27's schedule (lr 1e-4; Cityscapes: 1e-3): 10 epochs, batches of
# 128, k-means on the first 20 batches of 256 images (5,120). The other real sets take it, for want of
# published values; the embedded set and folders take the values chosen on the embedded data.
AUTHORS_SCHEDULE = dict(lr=1e-4, epochs=10, batch_size=128, cluster_images=5120)
EMBEDDED_SCHEDULE = dict(lr=5e-4, epochs=6, batch_size=32, cluster_images=160)


def square(im, side, resample, scale=None, fill=0):
    """A PIL image as a side x side square, as the protocols do it.

    scale=None: resize the short side to `side`, centre crop (PiCIE).
    scale=s:    resize by the factor s, then centre crop, padding with `fill`
                where the scaled image is smaller than `side` (IIC's 128 px sets).
    """
    w, h = im.size
    s = side / min(w, h) if scale is None else scale
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    if scale is None:
        nw, nh = max(side, nw), max(side, nh)
    return _crop_pad(im.resize((nw, nh), resample), side, fill)


def _crop_pad(im, side, fill):
    """Centre `side` x `side` window of `im`, padded with `fill` outside it."""
    w, h = im.size
    left, top = (w - side) // 2, (h - side) // 2
    canvas = Image.new(im.mode, (side, side), fill)
    if im.mode == "P":
        canvas.putpalette(im.getpalette())
    canvas.paste(im.crop((max(left, 0), max(top, 0), min(left + side, w), min(top + side, h))),
                 (max(-left, 0), max(-top, 0)))
    return canvas


def lookup(mapping, valid, name):
    """A 256-entry table id -> class (IGNORE where unmapped) and the mask of valid ids."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    ok = np.zeros(256, dtype=bool)
    ok[list(valid)] = True
    return lut, ok, name


def map_labels(arr, table, path):
    """Map raw label ids through a `lookup` table; an id outside the dataset's range is an error."""
    lut, ok, name = table
    present = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
    bad = present[~ok[present]]
    if bad.size:
        raise DataError(f"{path}: label id {int(bad[0])} is outside the range of {name} "
                        f"(ids found: {', '.join(map(str, present[:20]))})")
    return lut[arr]


def open_image(path, what="image"):
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read this {what} ({type(e).__name__}: {e})") from None


def to_rgb(im, path):
    """8-bit RGB of any image Pillow reads, its full range kept. Pillow's own convert("RGB") clips a
    16-bit grey image at 255 (a bright photograph becomes white); here 0..65535 maps to 0..255. (16-bit
    colour PNGs Pillow already reads as 8-bit RGB, by their high bytes.) Integer or float images of
    other depths have no range to map from: refused."""
    if im.mode in SIXTEEN_BIT:
        grey = np.rint(np.asarray(im, dtype=np.float64) * (255 / 65535)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if im.mode in ("I", "F"):
        raise DataError(f"{path}: {'32-bit integer' if im.mode == 'I' else 'floating-point'} pixels "
                        f"(mode {im.mode}) have no fixed range; save it as an 8- or 16-bit image")
    return im.convert("RGB")


def require(path, layout, kind="folder"):
    """Stop with the expected layout when a path of the official download is missing."""
    ok = path.is_dir() if kind == "folder" else path.is_file()
    if not ok:
        raise DataError(f"{path}: {kind} not found. Expected layout:\n{layout}")
    return path


def load_pair(item, side, scale=None, table=None):
    """(image path, label path or None) -> (1, side, side, 3) image, (1, side, side) label or None.

    Labels are mapped at full resolution (ids checked against the dataset's
    range), then resized with nearest neighbour; padding is IGNORE.
    """
    img_path, lab_path = item
    im = open_image(img_path)
    image = np.asarray(square(to_rgb(im, img_path), side, Image.BILINEAR, scale))[None]
    if lab_path is None:
        return image, None
    lab = open_image(lab_path, "label")
    if lab.mode not in ("L", "P"):
        raise DataError(f"{lab_path}: label must be a single-channel uint8 PNG, got mode {lab.mode}")
    if lab.size != im.size:
        raise DataError(f"{lab_path}: label is {lab.size[0]}x{lab.size[1]} but its image {img_path} is "
                        f"{im.size[0]}x{im.size[1]}")
    ids = np.asarray(lab)
    if table is not None:
        ids = map_labels(ids, table, lab_path)
    label = square(Image.fromarray(ids), side, Image.NEAREST, scale, fill=IGNORE)
    return image, np.asarray(label)[None]
