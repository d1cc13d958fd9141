"""A folder of the user's own images, with optional labels.

    DIR/images/*.png|jpg|jpeg   the images (any size)
    DIR/labels/<stem>.png       optional: uint8 class ids, same size as the image, 255 = ignore
    DIR/classes.txt             optional: one class name a line (line i = class id i)
    DIR/things.txt              optional: names of the classes that are things; the rest are stuff

Images are resized (short side to res) and centre-cropped to res x res, labels
with nearest neighbour, decoded on every core and streamed into memory-mapped
arrays, so that a folder of any size fits in memory.
"""
import functools
from pathlib import Path

import numpy as np

from lib.data.base import EMBEDDED_SCHEDULE, IGNORE, DataError, Protocol, load_pair, lookup
from lib.data.stream import write_split
from lib.errors import ParamsError, warn

# k=None: `cluster.k: auto` is the number of lines of classes.txt (auto_k)
PROTOCOLS = {"folder": Protocol(res=128, train_scale=1, k=None, **EMBEDDED_SCHEDULE)}
PARAMS = {"val_fraction": float}  # the share of the images held out for evaluation
READS = ("images", "labels", "classes.txt", "things.txt")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUT = ("DIR/images/*.png|jpg       the images\n"
          "DIR/labels/<stem>.png      optional uint8 class ids (255 = ignore)\n"
          "DIR/classes.txt            optional class names, one a line\n"
          "DIR/things.txt             optional names of the thing classes")


def check(data, source):
    if not 0.0 < data["val_fraction"] < 1.0:
        raise ParamsError(f"{source}: 'data.val_fraction' must be in (0, 1), the share of a folder's images held "
                          f"out for evaluation, got {data['val_fraction']}")


def auto_k(data, source):
    """`cluster.k: auto`: the class names in classes.txt; without one, the user must say."""
    classes = Path(data["root"]) / "classes.txt"
    if not classes.is_file():
        raise ParamsError(f"{source}: 'cluster.k: auto' needs {classes} (one class name a line); "
                          "or set cluster.k to the number of classes you expect")
    k = sum(1 for line in classes.read_text().splitlines() if line.strip())
    if not k:
        raise ParamsError(f"{source}: 'cluster.k: auto' reads the class names of {classes}, which has none")
    return k


def _read_names(path):
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: empty (expected one class name a line)")
    return names


def read_classes(path):
    """Class names by id: line i is id i, so a blank line (but at the end) or a repeated name would
    silently shift or merge ids: refused, naming the line."""
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty (expected one class name a line)")
    seen = {}
    for i, line in enumerate(lines):
        name = line.strip()
        if not name:
            raise DataError(f"{path}: line {i + 1} is blank; line i names class id i - 1, so every line "
                            "up to the last class needs a name")
        if name in seen:
            raise DataError(f"{path}: line {i + 1} repeats {name!r} (line {seen[name] + 1}); class names "
                            "must be distinct")
        seen[name] = i
    return [line.strip() for line in lines]


def list_images(images_dir):
    return sorted(f for f in Path(images_dir).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def prepare_folder(root, out, res, train_res, val_fraction, seed, workers=1):
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: folder not found; data.name: folder expects\n{LAYOUT}")
    files = list_images(images_dir)
    if not files:
        raise DataError(f"{images_dir}: no images (*.png, *.jpg, *.jpeg) in this folder")
    classes = read_classes(root / "classes.txt") if (root / "classes.txt").is_file() else None
    labelled = labels_dir.is_dir()
    if labelled:
        for f in files:
            if not (labels_dir / f"{f.stem}.png").is_file():
                raise DataError(f"{labels_dir / (f.stem + '.png')}: missing label for image {f}")

    n = len(files)
    n_val = min(n - 1, max(1, round(val_fraction * n))) if n > 1 else 1
    if n == 1:
        warn(f"{images_dir}: one image, used for both training and validation: its scores measure how "
             "well the run fits that image, not how it segments unseen ones")
    perm = np.random.default_rng(seed).permutation(n)
    splits = {"train": np.sort(perm[n_val:]) if n > 1 else perm, "val": np.sort(perm[:n_val])}
    table = None
    if classes is not None:
        ids = list(range(len(classes)))
        table = lookup(dict(zip(ids, ids)), ids + [IGNORE],
                       f"{root / 'classes.txt'} ({len(classes)} classes, ids 0..{len(classes) - 1}, 255 = ignore)")
    counts, names = {}, {}
    for split, idx in splits.items():
        items = [(files[i], labels_dir / f"{files[i].stem}.png" if labelled else None) for i in idx]
        side = train_res if split == "train" else res
        load = functools.partial(load_pair, side=side, table=table)
        hist = write_split(out, split, items, load, [1] * len(items), side, workers, labelled=labelled)
        if hist is not None:
            counts[split] = hist.tolist()
        names[split] = [files[i].name for i in idx]
    max_id = max((max(np.flatnonzero(h[:IGNORE]), default=-1) for h in counts.values()), default=-1)

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
    return dict(name="folder", root=str(root), classes=classes, things=sorted(things), stuff=stuff,
                labelled=labelled, splits={s: len(v) for s, v in splits.items()}, pixel_counts=counts,
                stats={}, names=names)


def prepare(p, out, workers):
    return prepare_folder(p.data.root, out, p.data.res, p.data.train_res, p.data.val_fraction, p.data.seed, workers)
