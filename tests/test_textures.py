"""Tests for the synthetic texture/shape segmentation dataset (lib/data/textures.py)."""
import numpy as np
import pytest

from lib.data.textures import CLASSES, STUFF, THINGS, make_split


@pytest.fixture(scope="module")
def split60():
    return make_split(60, 64, 0)


def test_api_constants():
    assert STUFF == ("brick", "grass", "gravel", "moon")
    assert THINGS == ("horse", "disc", "triangle", "star")
    assert CLASSES == STUFF + THINGS


def test_shapes_and_dtypes():
    x, y = make_split(3, 32, 7)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (3, 32, 32) and y.dtype == np.uint8
    assert y.max() < len(CLASSES)  # every pixel labelled, no ignore value


def test_deterministic_and_seed_dependent():
    x1, y1 = make_split(4, 32, 123)
    x2, y2 = make_split(4, 32, 123)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    x3, y3 = make_split(4, 32, 124)
    assert not np.array_equal(x1, x3)
    assert not np.array_equal(y1, y3)


def test_image_i_independent_of_n():
    x5, y5 = make_split(5, 32, 3)
    x3, y3 = make_split(3, 32, 3)
    assert np.array_equal(x5[:3], x3) and np.array_equal(y5[:3], y3)


def test_all_classes_occur(split60):
    _, y = split60
    assert set(np.unique(y).tolist()) == set(range(len(CLASSES)))


def test_stuff_fraction(split60):
    _, y = split60
    frac = (y < len(STUFF)).mean()
    assert 0.5 < frac < 0.9


def test_colour_does_not_identify_stuff_class(split60):
    """Nearest-class-mean on per-pixel RGB must be poor (chance is ~25 %)."""
    x, y = split60
    stuff = y < len(STUFF)
    pix, lab = x[stuff].astype(np.float32), y[stuff]
    means = np.stack([pix[lab == c].mean(0) for c in range(len(STUFF))])
    pred = ((pix[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == lab).mean() < 0.5

    # and the class means sit closer together than regions of one class spread
    region_means = {c: [] for c in range(len(STUFF))}
    for img, lbl in zip(x, y):
        for c in np.unique(lbl[lbl < len(STUFF)]):
            region_means[int(c)].append(img[lbl == c].astype(np.float32).mean(0))
    within = np.mean([np.stack(v).std(0).mean() for v in region_means.values()])
    between = means.std(0).mean()
    assert between < within
