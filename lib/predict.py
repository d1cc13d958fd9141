"""Segment new images of any size with a trained run (the `predict` command).

Each image is resized so that its short side is the run's data.res (aspect
kept), labelled by the run's classifier as the evaluate stage labels (with
flip averaging and the dense CRF at that size where eval.flip and eval.crf
say: lib/scoring.py), and the scores are upsampled to the image's own size.
Images are decoded by a small thread pool a few batches
ahead, and consecutive images of the same resized shape share a batch, so
thousands of images stream through in bounded memory. An image that cannot
be read is reported and skipped.
"""
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from lib.data.base import IGNORE, to_rgb
from lib.data.folder import IMAGE_SUFFIXES
from lib.errors import DataError
from lib.features import to_tensor
from lib.io import atomic_path
from lib.report import cluster_colours, colourise, palette


def collect(paths):
    """Image files named directly or found (not recursively) in the named folders, in order."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not files:
        raise DataError(f"{', '.join(map(str, paths))}: no images (*.png, *.jpg, *.jpeg)")
    return files


def load(path, res):
    """(original RGB uint8 array, resized uint8 array with short side res) or the error message."""
    try:
        im = Image.open(path)
        im.load()
        im = to_rgb(im, path)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    w, h = im.size
    s = res / min(w, h)
    small = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    return np.asarray(im), np.asarray(small)


def label_colours(mapping, classes, k):
    """Colour of each cluster: its matched class's when the run was scored, else its own."""
    if mapping is None:
        return palette(k)
    return cluster_colours(np.asarray(mapping), palette(len(classes)), k)


def overlay(image, clusters, colours, names, alpha=0.55):
    """The image blended with the cluster colours, and a legend strip naming what is shown."""
    blend = (alpha * colourise(clusters, colours) + (1 - alpha) * image).astype(np.uint8)
    present = [c for c in np.unique(clusters) if c != IGNORE]
    row = 16
    canvas = Image.new("RGB", (blend.shape[1], blend.shape[0] + row * len(present)), "white")
    canvas.paste(Image.fromarray(blend), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(present):
        y = blend.shape[0] + i * row
        draw.rectangle([2, y + 2, 14, y + 13], fill=tuple(int(v) for v in colours[c]))
        draw.text((18, y + 2), names[c], fill="black")
    return canvas


def _write(out, name, clusters, image, lut, colours, names):
    with atomic_path(out / "labels" / f"{name}.png", ".png") as tmp:
        Image.fromarray(lut[clusters].astype(np.uint8)).save(tmp)
    with atomic_path(out / "overlays" / f"{name}.jpg", ".jpg") as tmp:
        overlay(image, clusters, colours, names).save(tmp, quality=90)


def run(files, out, model, scorer, res, batch_size, device, mapping=None, classes=None):
    """Write out/labels/<name>.png and out/overlays/<name>.jpg for each readable image.

    Label PNGs hold the matched class id of each pixel when the run was scored
    (255 for clusters matched to no class), else the cluster id. Returns the
    number written and the list of (file, reason) skipped. scorer: a lib.scoring.Scorer of the run's
    classifier (entered).
    """
    out = Path(out)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    k = len(scorer.clf)
    colours = label_colours(mapping, classes, k)
    if mapping is not None:
        lut = np.array([c if c >= 0 else IGNORE for c in mapping], dtype=np.uint8)
        names = [classes[c] if c >= 0 else f"cluster {i}" for i, c in enumerate(mapping)]
    else:
        lut, names = np.arange(k, dtype=np.uint8), [f"cluster {i}" for i in range(k)]
    model.eval()
    taken, skipped, written = set(), [], 0
    pending = []  # (name, original, resized) of one resized shape

    def flush():
        nonlocal written
        if pending:
            small = [p[2] for p in pending]
            with torch.no_grad():
                z = model(to_tensor(np.stack(small), device)).float().cpu()
            labels = scorer.labels(z, small, [p[1].shape[:2] for p in pending])
            for (name, image, _), clusters in zip(pending, labels):
                _write(out, name, clusters, image, lut, colours, names)
                written += 1
            pending.clear()

    with ThreadPoolExecutor(max_workers=2) as pool:
        ahead = 2 * batch_size  # decoded images waiting at most: memory stays bounded
        futures = [pool.submit(load, f, res) for f in files[:ahead]]
        for i, f in enumerate(tqdm(files, desc="predict", unit="image")):
            result = futures[i].result()
            futures[i] = None
            if i + ahead < len(files):
                futures.append(pool.submit(load, files[i + ahead], res))
            if isinstance(result, str):
                skipped.append((f, result))
                print(f"skipped {f}: {result}", file=sys.stderr, flush=True)
                continue
            name = f.stem if f.stem not in taken else f"{f.stem}_{i}"
            taken.add(name)
            if pending and (pending[0][2].shape != result[1].shape or len(pending) == batch_size):
                flush()
            pending.append((name, result[0], result[1]))
        flush()
    return written, skipped
