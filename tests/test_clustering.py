import numpy as np
import torch

from lib.clustering import _kmeans_torch, assign, kmeans, neg_sq_distance


def _blobs(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [-5.0, -5.0, -5.0]])
    labels = torch.arange(4).repeat_interleave(200)
    return centres[labels] + 0.3 * torch.randn(800, 3, generator=g), labels, centres


def _purity(pred, labels):
    return sum(np.bincount(pred[labels == c].numpy(), minlength=4).max() for c in range(4)) / len(labels)


def test_kmeans_recovers_separable_clusters():
    x, labels, centres = _blobs()
    for fit in (kmeans, _kmeans_torch):
        mu = fit(x, 4, 20, 0)
        assert mu.shape == (4, 3)
        pred = assign(x, mu)
        assert _purity(pred, labels) == 1.0
        # every true centre has a centroid within 0.2
        assert torch.cdist(centres, mu).min(1).values.max() < 0.2


def test_kmeans_refuses_fewer_points_than_clusters():
    try:
        kmeans(torch.randn(3, 2), 4)
    except ValueError as e:
        assert "3 points" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_neg_sq_distance_argmax_is_nearest_centroid():
    x, _, _ = _blobs(1)
    mu = kmeans(x, 4, 10, 0)
    z = x[:12].T.reshape(1, 3, 3, 4)
    s = neg_sq_distance(z, mu)
    assert s.shape == (1, 4, 3, 4)
    expected = -((x[:12, None] - mu[None]) ** 2).sum(-1)
    assert torch.allclose(s[0].reshape(4, 12).T, expected, atol=1e-4)
    assert torch.equal(s.argmax(1).flatten(), assign(x[:12], mu))
