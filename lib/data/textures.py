"""Synthetic-but-photographic segmentation data built from skimage's bundled photos.

Each image has 2-3 "stuff" regions (irregular Voronoi cells) filled with a real
texture photo (brick, grass, gravel, moon) and 1-3 pasted "things" (horse, disc,
triangle, star) that are flat-coloured and told apart only by their shape.
Every region and instance gets a random colour and random brightness/contrast,
so colour alone does not identify a class: clustering raw RGB scores poorly,
while a model that learns texture and shape can do well.

Everything is offline (skimage.data ships these images) and deterministic:
image i depends only on (seed, i, res), never on n.
"""
import colorsys
from functools import lru_cache

import numpy as np

from lib.data.base import EMBEDDED_SCHEDULE, Protocol
from lib.errors import ParamsError

# made from params alone (data.seed, data.train_size, ...): no data.root, nothing on disk to read
PROTOCOLS = {"textures": Protocol(res=128, train_scale=1, k=8, root=False, **EMBEDDED_SCHEDULE)}
PARAMS = {"train_size": int, "val_size": int, "imbalance": float}
POSITIVE = ("train_size", "val_size")
READS = ()

STUFF = ("brick", "grass", "gravel", "moon")  # class ids 0..3, defined by texture
THINGS = ("horse", "disc", "triangle", "star")  # class ids 4..7, defined by shape
CLASSES = STUFF + THINGS
# Stuff regions get a random hue at moderate saturation: colour varies freely
# within every class (so it cannot identify one), but does not drown the
# texture, which is what defines a stuff class.
STUFF_SATURATION = (0.0, 0.5)


@lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    """Grayscale texture photo as float32 in [0, 1] (512x512), loaded once."""
    from skimage import data as skdata  # here, not at the top: reading params (lib/config) imports this
    # module for its protocol, and skimage's transforms bring scipy (~0.7 s of every stage's start)

    img = getattr(skdata, name)()
    return img.astype(np.float32) / 255.0


@lru_cache(maxsize=None)
def _horse() -> np.ndarray:
    """Horse silhouette (True = horse), cropped to its bounding box."""
    from skimage import data as skdata

    m = ~skdata.horse()  # skimage's horse is False on the animal
    ys, xs = np.nonzero(m)
    return m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _tint(rng, sat_lo: float, sat_hi: float, val_lo: float, val_hi: float) -> np.ndarray:
    """Random RGB colour: uniform hue so every class shows up in every hue."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(sat_lo, sat_hi), rng.uniform(val_lo, val_hi))
    return np.asarray(rgb, np.float32)


# ---------------------------------------------------------------- stuff
def _stuff_partition(rng, res: int, k: int) -> np.ndarray:
    """(res, res) int map of k regions: Voronoi cells of warped coordinates,
    so that the boundaries are wavy instead of straight lines."""
    u = (np.arange(res, dtype=np.float32) + 0.5) / res
    yy, xx = np.meshgrid(u, u, indexing="ij")
    wy, wx = yy.copy(), xx.copy()
    for w in (wy, wx):  # a few random low-frequency sinusoids per axis
        for _ in range(3):
            f = rng.uniform(-4.0, 4.0, size=2) * np.pi
            w += rng.uniform(0.02, 0.07) * np.sin(f[0] * yy + f[1] * xx + rng.uniform(0, 2 * np.pi))
    seeds = rng.uniform(0.1, 0.9, size=(k, 2)).astype(np.float32)
    d = (wy[None] - seeds[:, 0, None, None]) ** 2 + (wx[None] - seeds[:, 1, None, None]) ** 2
    return d.argmin(0)


def _texture_crop(rng, name: str, res: int) -> np.ndarray:
    """Random crop of a texture at a random scale (0.5x-1.5x), rotated/flipped."""
    from skimage.transform import resize  # imported where used: see _texture

    tex = _texture(name)
    scale = rng.uniform(0.5, 1.5)
    c = int(min(tex.shape[0], round(res / scale)))
    y0, x0 = rng.integers(0, tex.shape[0] - c + 1, size=2)
    crop = np.rot90(tex[y0:y0 + c, x0:x0 + c], k=int(rng.integers(4)))
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    # bilinear; mild anti-aliasing only matters when shrinking (c > res)
    return resize(crop, (res, res), order=1, anti_aliasing=c > res, preserve_range=True).astype(np.float32)


def class_probabilities(n: int, imbalance: float) -> np.ndarray | None:
    """Draw probabilities of a group's n classes whose most frequent is `imbalance` times its least
    frequent, geometrically spaced; None at 1 (uniform: the draws as made before the param existed)."""
    if imbalance == 1:
        return None
    p = float(imbalance) ** (-np.arange(n) / (n - 1))
    return p / p.sum()


def _paint_stuff(rng, res: int, img: np.ndarray, lab: np.ndarray, p_stuff=None) -> None:
    k = int(rng.integers(2, 4))
    classes = rng.choice(len(STUFF), size=k, replace=False, p=p_stuff)
    part = _stuff_partition(rng, res, k)
    for r, cls in enumerate(classes):
        m = part == r
        lum = _texture_crop(rng, STUFF[cls], res)
        if not m.any():
            continue
        # normalise contrast per region so brightness statistics do not give the class away
        v = lum[m]
        v = (v - v.mean()) / (v.std() + 1e-6)
        v = np.clip(v * rng.uniform(0.12, 0.25) + rng.uniform(0.3, 0.7), 0.0, 1.0)
        img[m] = v[:, None] * _tint(rng, STUFF_SATURATION[0], STUFF_SATURATION[1], 1.0, 1.0)
        lab[m] = cls


# ---------------------------------------------------------------- things
def _fit_polygon(pts: np.ndarray, side: int) -> np.ndarray:
    """Rasterise polygon (N, 2) [y, x] scaled so its bounding box's long side = side."""
    from skimage.draw import polygon as draw_polygon  # imported where used: see _texture

    pts = pts - pts.min(0)
    pts = pts * ((side - 1) / pts.max())
    h, w = (np.ceil(pts.max(0)).astype(int) + 1)
    mask = np.zeros((h, w), bool)
    rr, cc = draw_polygon(pts[:, 0], pts[:, 1], shape=(h, w))
    mask[rr, cc] = True
    return mask


def _thing_mask(rng, kind: str, side: int) -> np.ndarray:
    """Boolean mask of one thing whose bounding box's long side is about `side` px."""
    if kind == "disc":
        u = np.arange(side) - (side - 1) / 2
        return u[:, None] ** 2 + u[None, :] ** 2 <= (side / 2) ** 2
    if kind == "horse":
        src = _horse()
        a = np.deg2rad(rng.uniform(-15, 15))
        ca, sa = np.cos(a), np.sin(a)
        h0, w0 = src.shape
        # size of the rotated bounding box in source pixels, then scale to `side`
        hb, wb = abs(ca) * h0 + abs(sa) * w0, abs(sa) * h0 + abs(ca) * w0
        s = side / max(hb, wb)
        h, w = max(int(round(hb * s)), 1), max(int(round(wb * s)), 1)
        # inverse-map each output pixel into the source mask (nearest neighbour = crisp)
        y = (np.arange(h) - (h - 1) / 2)[:, None] / s
        x = (np.arange(w) - (w - 1) / 2)[None, :] / s
        sy = np.rint(ca * y - sa * x + (h0 - 1) / 2).astype(int)
        sx = np.rint(sa * y + ca * x + (w0 - 1) / 2).astype(int)
        ok = (sy >= 0) & (sy < h0) & (sx >= 0) & (sx < w0)
        mask = np.zeros((h, w), bool)
        mask[ok] = src[sy[ok], sx[ok]]
        return mask[:, ::-1] if rng.uniform() < 0.5 else mask
    if kind == "triangle":
        ang = np.deg2rad([90.0, 210.0, 330.0]) + rng.uniform(-0.15, 0.15, size=3)  # roughly equilateral
        rad = np.ones(3)
    else:  # star: 5 outer points, inner radius about 0.4 of outer
        ang = np.arange(10) * (np.pi / 5)
        rad = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.36, 0.44))
    ang = ang + rng.uniform(0, 2 * np.pi)
    return _fit_polygon(np.stack([rad * np.sin(ang), rad * np.cos(ang)], 1), side)


def _paint_thing(rng, res: int, img: np.ndarray, lab: np.ndarray, p_things=None) -> None:
    cls = int(rng.integers(len(THINGS)) if p_things is None else rng.choice(len(THINGS), p=p_things))
    side = int(round(res * (0.2 + 0.4 * rng.uniform() ** (1 / 3))))  # 20-60 % of res, biased large
    mask = _thing_mask(rng, THINGS[cls], max(side, 3))
    h, w = mask.shape
    # overhang <= 29 % per axis keeps at least 0.71^2 ~ 50 % of the box visible
    y0 = int(rng.integers(-int(0.29 * h), res - h + int(0.29 * h) + 1))
    x0 = int(rng.integers(-int(0.29 * w), res - w + int(0.29 * w) + 1))
    # flat random colour with a +-15 % linear shading ramp and light noise: no texture
    colour = _tint(rng, 0.2, 1.0, 0.25, 1.0)
    th = rng.uniform(0, 2 * np.pi)
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    shade = 1.0 + 0.15 * (np.sin(th) * gy + np.cos(th) * gx) / np.sqrt(2)
    patch = shade[..., None] * colour + rng.normal(0, 0.03, size=(h, w, 3)).astype(np.float32)
    # clip the box to the frame
    ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + h, res), min(x0 + w, res)
    m = mask[ya - y0:yb - y0, xa - x0:xb - x0]
    img[ya:yb, xa:xb][m] = np.clip(patch[ya - y0:yb - y0, xa - x0:xb - x0][m], 0.0, 1.0)
    lab[ya:yb, xa:xb][m] = len(STUFF) + cls


def _make_image(rng, res: int, p_stuff=None, p_things=None) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((res, res, 3), np.float32)
    lab = np.zeros((res, res), np.uint8)
    _paint_stuff(rng, res, img, lab, p_stuff)
    for _ in range(int(rng.choice([1, 2, 3], p=[0.1, 0.4, 0.5]))):
        _paint_thing(rng, res, img, lab, p_things)  # later things overwrite earlier ones
    return (img * 255.0 + 0.5).astype(np.uint8), lab


def make_split(n: int, res: int, seed: int, imbalance: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, res, res, 3) uint8 and labels (n, res, res) uint8 with ids 0..7.

    Image i is generated from child i of SeedSequence(seed), so it does not depend on n. `imbalance`
    (data.imbalance) skews the classes drawn for the regions and things, within stuff and within things,
    from uniform (1) towards a long tail like real scenes' (the first class of each group `imbalance`
    times as likely as the last).
    """
    images = np.empty((n, res, res, 3), np.uint8)
    labels = np.empty((n, res, res), np.uint8)
    p = class_probabilities(len(STUFF), imbalance), class_probabilities(len(THINGS), imbalance)
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(n)):
        images[i], labels[i] = _make_image(np.random.default_rng(ss), res, *p)
    return images, labels


def check(data, source):
    if data["imbalance"] < 1:
        raise ParamsError(f"{source}: 'data.imbalance' must be 1 (uniform classes) or more (how many times the "
                          f"most frequent class of a group is as likely as the least), got {data['imbalance']}")


def prepare(p, out, workers):
    counts = {}
    # train and val come from disjoint seed streams; data.seed (not the training
    # seed) fixes them, so `-S seed=1` re-trains on the same data.
    for split, n, side, offset in (("train", p.data.train_size, p.data.train_res, 0),
                                   ("val", p.data.val_size, p.data.res, 1)):
        images, labels = make_split(n, side, 2 * p.data.seed + offset, p.data.imbalance)
        np.save(out / f"{split}_images.npy", images)
        np.save(out / f"{split}_labels.npy", labels)
        counts[split] = np.bincount(labels.ravel(), minlength=256).tolist()
    return dict(name="textures", classes=list(CLASSES), stuff=list(range(len(STUFF))),
                things=list(range(len(STUFF), len(CLASSES))), labelled=True,
                splits={"train": p.data.train_size, "val": p.data.val_size}, pixel_counts=counts, stats={},
                names={})
