"""Data that is not the embedded set: a labelled folder of JPEG photos, as a new user would bring one.

    python bench/outside_data.py /tmp/outside [--images 1200] [--seed 0]
    dvc exp run -S data.name=folder -S data.root=/tmp/outside -S data.val_fraction=0.4

Why it exists: the defaults are tuned on the embedded textures (lib/data/textures.py); whether they
only fit that set shows on data made differently. Nothing here is shared with that module, and the
choices differ on purpose: other photographs (scikit-image's cat fur, coins, stained tissue, deep
field, printed page: 5 stuff classes against 4), stuff regions cut by straight lines (not Voronoi
cells), photo colours kept (not re-tinted over the hue circle) with a random hue rotation on half
of them, things of other shapes (cross, ring, crescent, arrow) filled either with a flat colour or
with a grey photo crop, images of varied non-square sizes stored as JPEG (the folder loader resizes
and centre-crops them), labels as PNG with 255 on a 1-pixel band around every thing (ambiguous
JPEG edges). Writes DIR/images, DIR/labels, DIR/classes.txt, DIR/things.txt; deterministic in
(seed, image index). Written before any run on it, and not tuned after.
"""
import colorsys
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from scipy import ndimage
from skimage import data as skdata

STUFF = {"fur": lambda: skdata.chelsea()[40:290, 90:380], "coins": skdata.coins,
         "tissue": skdata.immunohistochemistry, "deep_field": skdata.hubble_deep_field, "page": skdata.page}
THINGS = ("cross", "ring", "crescent", "arrow")
CLASSES = tuple(STUFF) + THINGS


def _rgb(img):
    img = np.asarray(img, np.float32) / 255.0
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def _hue_rotate(img, turns):
    """Rotate every pixel's hue by `turns` (a rotation about the grey axis of RGB space)."""
    a = 2 * np.pi * turns
    c, s, k = np.cos(a), np.sin(a), 1 / 3
    m = c * np.eye(3) + (1 - c) * k + s * np.sqrt(k) * np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]])
    return np.clip(img @ m.T, 0, 1)


def _crop(rng, photo, h, w):
    """A random h x w crop of `photo` at a random scale (0.5-1.5 of its pixels), resampled."""
    scale = rng.uniform(0.5, 1.5)
    ph, pw = photo.shape[:2]
    ch, cw = min(ph, int(h / scale)), min(pw, int(w / scale))
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    patch = Image.fromarray((photo[y:y + ch, x:x + cw] * 255).astype(np.uint8))
    return np.asarray(patch.resize((w, h), Image.BILINEAR), np.float32) / 255.0


def _shape(kind, rng, side):
    """A boolean side x side mask of the thing, rotated at random."""
    u = (np.arange(side) + 0.5) / side * 2 - 1
    y, x = np.meshgrid(u, u, indexing="ij")
    a = rng.uniform(0, 2 * np.pi)
    y, x = np.cos(a) * y - np.sin(a) * x, np.sin(a) * y + np.cos(a) * x
    r = np.hypot(y, x)
    if kind == "cross":
        t = rng.uniform(0.22, 0.35)
        return ((abs(x) < t) | (abs(y) < t)) & (abs(x) < 0.9) & (abs(y) < 0.9)
    if kind == "ring":
        return (r < 0.9) & (r > rng.uniform(0.45, 0.6))
    if kind == "crescent":
        return (r < 0.9) & (np.hypot(y, x - rng.uniform(0.35, 0.5)) > 0.75)
    t = rng.uniform(0.15, 0.25)  # arrow: a shaft and a triangular head pointing to +x
    return ((abs(y) < t) & (x > -0.9) & (x < 0.2)) | ((x >= 0.2) & (x < 0.9) & (abs(y) < 0.8 * (0.9 - x)))


def make_image(rng, photos):
    h, w = int(rng.integers(144, 225)), int(rng.integers(144, 225))
    img, lab = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    region = np.zeros((h, w), np.int64)
    for i in range(1, int(rng.integers(1, 4))):  # 1-3 cuts by random lines: 2-4 regions (some may vanish)
        a, cy, cx = rng.uniform(0, np.pi), rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        region += (np.cos(a) * (yy - cy) + np.sin(a) * (xx - cx) > 0) * (1 << (i - 1))
    for r in np.unique(region):
        cls = int(rng.integers(len(STUFF)))
        patch = _crop(rng, photos[CLASSES[cls]], h, w)
        if rng.uniform() < 0.5:
            patch = _hue_rotate(patch, rng.uniform())
        m = region == r
        img[m], lab[m] = patch[m], cls
    ignore = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(len(THINGS)))
        side = int(rng.integers(40, min(h, w) * 3 // 4))
        m = _shape(THINGS[kind], rng, side)
        y, x = int(rng.integers(-side // 4, h - side * 3 // 4)), int(rng.integers(-side // 4, w - side * 3 // 4))
        full = np.zeros((h, w), bool)
        ya, yb, xa, xb = max(y, 0), min(y + side, h), max(x, 0), min(x + side, w)
        full[ya:yb, xa:xb] = m[ya - y:yb - y, xa - x:xb - x]
        if rng.uniform() < 0.5:
            fill = np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 1), rng.uniform(0.3, 1)),
                              np.float32) + rng.normal(0, 0.03, (h, w, 3)).astype(np.float32)
        else:
            fill = _crop(rng, photos["camera"], h, w) * rng.uniform(0.5, 1.2)
        img[full], lab[full] = np.clip(fill[full], 0, 1), len(STUFF) + kind
        ignore = (ignore & ~full) | (ndimage.binary_dilation(full) & ~ndimage.binary_erosion(full))
    lab[ignore] = 255
    return (img * 255 + 0.5).astype(np.uint8), lab


def main(out: Path, images: int = 1200, seed: int = 0):
    photos = {name: _rgb(load()) for name, load in STUFF.items()}
    photos["camera"] = _rgb(skdata.camera())
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(images)):
        img, lab = make_image(np.random.default_rng(ss), photos)
        Image.fromarray(img).save(out / "images" / f"{i:05d}.jpg", quality=90)
        Image.fromarray(lab).save(out / "labels" / f"{i:05d}.png")
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "things.txt").write_text("\n".join(THINGS) + "\n")
    print(f"{images} images, {len(CLASSES)} classes ({len(STUFF)} stuff, {len(THINGS)} things) -> {out}")


if __name__ == "__main__":
    typer.run(main)
