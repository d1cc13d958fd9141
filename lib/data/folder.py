"""A folder of the user's own images, with optional labels.

    DIR/images/*.png|jpg|jpeg   the images (any size)
    DIR/labels/<stem>.png       optional: uint8 class ids, same size as the image, 255 = ignore
    DIR/classes.txt             optional: one class name a line (line i = class id i)
    DIR/things.txt              optional: names of the classes that are things; the rest are stuff

Images are resized (short side to res) and centre-cropped to res x res, labels
with nearest neighbour, streamed into memory-mapped arrays one image at a
time so that a folder of any size fits in memory.
"""
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lib.data.base import IGNORE, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUT = ("DIR/images/*.png|jpg       the images\n"
          "DIR/labels/<stem>.png      optional uint8 class ids (255 = ignore)\n"
          "DIR/classes.txt            optional class names, one a line\n"
          "DIR/things.txt             optional names of the thing classes")


def _resize_crop(im, res, resample):
    w, h = im.size
    s = res / min(w, h)
    nw, nh = max(res, round(w * s)), max(res, round(h * s))
    im = im.resize((nw, nh), resample)
    left, top = (nw - res) // 2, (nh - res) // 2
    return im.crop((left, top, left + res, top + res))


def _open(path, what):
    try:
        im = Image.open(path)
        im.load()
        return im
    except Exception as e:
        raise DataError(f"{path}: cannot read this {what} ({type(e).__name__}: {e})") from None


def _read_names(path):
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: empty (expected one class name a line)")
    return names


def list_images(images_dir):
    return sorted(f for f in Path(images_dir).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def prepare_folder(root, out, res, val_fraction, seed):
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: folder not found; data.name: folder expects\n{LAYOUT}")
    files = list_images(images_dir)
    if not files:
        raise DataError(f"{images_dir}: no images (*.png, *.jpg, *.jpeg) in this folder")
    classes = _read_names(root / "classes.txt") if (root / "classes.txt").is_file() else None
    labelled = labels_dir.is_dir()
    if labelled:
        for f in files:
            if not (labels_dir / f"{f.stem}.png").is_file():
                raise DataError(f"{labels_dir / (f.stem + '.png')}: missing label for image {f}")

    n = len(files)
    n_val = min(n - 1, max(1, round(val_fraction * n))) if n > 1 else 1
    perm = np.random.default_rng(seed).permutation(n)
    splits = {"val": np.sort(perm[:n_val]), "train": np.sort(perm[n_val:]) if n > 1 else perm}
    max_id = -1
    names = {}
    for split, idx in splits.items():
        imgs = np.lib.format.open_memmap(out / f"{split}_images.npy", "w+", np.uint8, (len(idx), res, res, 3))
        labs = (np.lib.format.open_memmap(out / f"{split}_labels.npy", "w+", np.uint8, (len(idx), res, res))
                if labelled else None)
        for j, i in enumerate(tqdm(idx, desc=f"prepare {split}", leave=False)):
            im = _open(files[i], "image")
            imgs[j] = np.asarray(_resize_crop(im.convert("RGB"), res, Image.BILINEAR))
            if labelled:
                lpath = labels_dir / f"{files[i].stem}.png"
                lab = _open(lpath, "label")
                if lab.mode not in ("L", "P"):
                    raise DataError(f"{lpath}: label must be a single-channel uint8 PNG, got mode {lab.mode}")
                if lab.size != im.size:
                    raise DataError(f"{lpath}: label is {lab.size[0]}x{lab.size[1]} but its image "
                                    f"{files[i]} is {im.size[0]}x{im.size[1]}")
                arr = np.asarray(lab)
                ids = arr[arr != IGNORE]
                top = int(ids.max()) if ids.size else -1
                if classes is not None and top >= len(classes):
                    raise DataError(f"{lpath}: class id {top} is out of range: classes.txt lists "
                                    f"{len(classes)} classes (ids 0..{len(classes) - 1}, 255 = ignore)")
                max_id = max(max_id, top)
                labs[j] = np.asarray(_resize_crop(lab, res, Image.NEAREST))
        imgs.flush()
        if labs is not None:
            labs.flush()
        names[split] = [files[i].name for i in idx]

    if classes is None:
        classes = [f"class_{i}" for i in range(max_id + 1)] if labelled else []
    things = []
    if (root / "things.txt").is_file():
        for name in _read_names(root / "things.txt"):
            if name not in classes:
                raise DataError(f"{root / 'things.txt'}: {name!r} is not a class "
                                f"(classes: {', '.join(classes) or 'none: no labels'})")
            things.append(classes.index(name))
    stuff = [c for c in range(len(classes)) if c not in things] if things else []
    return dict(name="folder", root=str(root), classes=classes, things=sorted(things), stuff=stuff, res=res,
                labelled=labelled, splits={s: len(v) for s, v in splits.items()}, names=names)
