"""Tests for the synthetic texture/shape segmentation dataset (lib/data/textures.py)."""
import numpy as np
import pytest

from lib.data.textures import CLASSES, STUFF, THINGS, _thing_mask, class_probabilities, make_split


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
    assert x.std() > 10 and len(np.unique(x.reshape(-1, 3), axis=0)) > 500  # photographic, not flat fills


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


def test_each_image_has_two_or_three_stuff_regions_and_one_to_three_things(split60):
    _, y = split60
    stuff = [len(np.unique(lab[lab < len(STUFF)])) for lab in y]
    things = [len(np.unique(lab[lab >= len(STUFF)])) for lab in y]
    assert set(stuff) <= {2, 3} and 3 in stuff and 2 in stuff  # 2-3 Voronoi cells, each its own class
    assert set(things) <= {1, 2, 3} and min(things) == 1  # 1-3 pasted things (two may share a class)
    frac = (y < len(STUFF)).mean()
    assert 0.7 < frac < 0.85  # things of 20-60 % of the side cover about a fifth of the pixels


def test_things_have_the_shape_their_class_names():
    """Things are told apart by shape alone: the fill of each mask's bounding box is the shape's."""
    rng = np.random.default_rng(0)
    fills = {kind: [_thing_mask(rng, kind, 61).mean() for _ in range(10)] for kind in THINGS}
    assert all(abs(f - np.pi / 4) < 0.01 for f in fills["disc"])  # a disc fills pi/4 of its square
    assert all(0.4 < f < 0.56 for f in fills["triangle"])  # a roughly equilateral triangle about half
    assert all(0.25 < f < 0.4 for f in fills["star"])  # a five-pointed star with inner radius ~0.4 a third
    assert all(0.25 < f < 0.45 for f in fills["horse"])  # skimage's horse silhouette
    assert max(fills["star"]) < min(fills["triangle"]) and max(fills["triangle"]) < min(fills["disc"])


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


def test_imbalance_gives_a_long_tail_of_classes_and_leaves_uniform_data_as_it_was():
    p = class_probabilities(4, 20)
    assert p.sum() == pytest.approx(1) and p[0] / p[-1] == pytest.approx(20)
    assert p[1] / p[2] == pytest.approx(20 ** (1 / 3))  # geometric between the ends
    assert class_probabilities(4, 1) is None  # uniform: the draws the data were made with before the param
    x1, y1 = make_split(40, 32, 5)
    x2, y2 = make_split(40, 32, 5, imbalance=1.0)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    _, ys = make_split(40, 32, 5, imbalance=20)
    freq, skewed = np.bincount(y1.ravel(), minlength=8), np.bincount(ys.ravel(), minlength=8)
    spread = lambda f: f.max() / max(f.min(), 1)  # noqa: E731
    assert spread(skewed) > 3 * spread(freq)  # the rarest class far rarer against the most frequent
    assert skewed[0] > skewed[3] and skewed[4] > skewed[7]  # the first class of each group leads its last
