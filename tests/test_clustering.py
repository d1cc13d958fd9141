import sys

import numpy as np
import pytest
import torch

import torch.nn.functional as F

from lib.errors import ParamsError
from lib.clustering import (_kmeans_torch, argmax_classifier, assign, classifier_scores, fit_linear_classifier, inertia,
                            kmeans, predict_clusters, prototype_classifier)


def _blobs(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [-5.0, -5.0, -5.0]])
    labels = torch.arange(4).repeat_interleave(200)
    return centres[labels] + 0.3 * torch.randn(800, 3, generator=g), labels, centres


def _purity(pred, labels):
    return sum(np.bincount(pred[labels == c].numpy(), minlength=4).max() for c in range(4)) / len(labels)


def test_kmeans_recovers_separable_clusters():
    x, labels, centres = _blobs()
    for backend in ("faiss", "torch"):
        mu = kmeans(x, 4, 20, 0, backend)
        assert mu.shape == (4, 3)
        pred = assign(x, mu)
        assert _purity(pred, labels) == 1.0
        # every true centre has a centroid within 0.2
        assert torch.cdist(centres, mu).min(1).values.max() < 0.2


def test_the_kmeans_backend_is_the_one_named(monkeypatch):
    """cluster.backend picks the implementation; a missing faiss is an error that says what to do,
    never a silent switch to the other backend."""
    x, _, _ = _blobs(3)
    calls = []
    monkeypatch.setattr("lib.clustering._kmeans_torch", lambda *a: calls.append("torch") or _kmeans_torch(*a))
    kmeans(x, 4, 5, 0, "faiss")
    assert calls == []
    kmeans(x, 4, 5, 0, "torch")
    assert calls == ["torch"]
    with pytest.raises(ParamsError, match="expected one of faiss, torch"):
        kmeans(x, 4, 5, 0, "sklearn")
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss were not installed
    with pytest.raises(ParamsError, match="faiss is not installed .* or set cluster.backend: torch"):
        kmeans(x, 4, 5, 0, "faiss")


def test_restarts_keep_the_run_of_lowest_inertia():
    """cluster.restarts: runs with seeds seed .. seed + R - 1, the one of least inertia kept (checked by hand
    against every single run; with 2 iterations on 12 overlapping blobs the runs differ)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=g).repeat_interleave(50, 0) + 0.8 * torch.randn(600, 5, generator=g)
    assert inertia(x, x[:1]) == pytest.approx(((x - x[0]) ** 2).sum().item(), rel=1e-5)
    mu = x[::100]  # six centroids; by hand: each row's squared distance to its nearest one, summed
    by_hand = torch.cdist(x, mu).pow(2).min(1).values.sum().item()
    assert inertia(x, mu, chunk=7) == pytest.approx(by_hand, rel=1e-5)
    assert inertia(x, mu, chunk=7, labels=assign(x, mu)) == inertia(x, mu, chunk=7)  # a given assignment
    for backend in ("faiss", "torch"):
        single = [kmeans(x, 6, 2, 7 + r, backend) for r in range(5)]
        costs = [inertia(x, mu) for mu in single]
        assert len(set(round(c, 3) for c in costs)) > 1, costs
        best = kmeans(x, 6, 2, 7, backend, restarts=5)
        assert torch.equal(best, single[int(np.argmin(costs))])
        assert torch.equal(kmeans(x, 6, 2, 7, backend, restarts=1), single[0])


def test_kmeans_refuses_fewer_points_than_clusters():
    # The message names the param a user has to change, not only the counts.
    with pytest.raises(ParamsError, match=r"4 clusters \(cluster.k.*only 3 pixel features"):
        kmeans(torch.randn(3, 2), 4)


def _neg_sq_distance(z, mu):
    """-||z - mu_k||^2 by its definition (B, d, h, w) -> (B, k, h, w), for reference."""
    return -((z[:, None] - mu[None, :, :, None, None]) ** 2).sum(2)


def test_assign_is_the_nearest_centroid_of_rows_and_of_feature_maps_alike():
    x, _, _ = _blobs(1)
    mu = kmeans(x, 4, 10, 0)
    expected = ((x[:, None] - mu[None]) ** 2).sum(-1).argmin(1)  # by hand: the least squared distance
    assert torch.equal(assign(x, mu), expected)
    assert torch.equal(assign(x, mu, chunk=7), expected)  # chunked alike
    z = x[:12].T.reshape(1, 3, 3, 4)
    assert assign(z, mu).shape == (1, 3, 4)
    assert torch.equal(assign(z, mu).flatten(), expected[:12])


def test_prototype_classifier_labels_as_the_nearest_centroid_also_after_upsampling():
    """[2 mu | -||mu||^2] differs from -||z - mu||^2 by -||z||^2 per pixel: the same argmax, upsampled too."""
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(2, 16, 5, 5, generator=g), dim=1)
    mu = torch.randn(6, 16, generator=g) * 0.5
    clf = prototype_classifier(mu)
    assert clf.shape == (6, 17)
    s = classifier_scores(z, clf)
    assert torch.allclose(s - (z * z).sum(1, keepdim=True), _neg_sq_distance(z, mu), atol=1e-5)
    reference = F.interpolate(_neg_sq_distance(z, mu), size=(13, 11), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(predict_clusters(z, clf, (13, 11)), reference)


def test_argmax_classifier_is_the_identity():
    p = torch.rand(1, 4, 3, 3)
    assert torch.equal(classifier_scores(p, argmax_classifier(4)), p)


@pytest.mark.slow
def test_linear_classifier_fit_on_kmeans_labels_reproduces_them():
    """No Train / Linear: a 1x1 classifier fitted on k-means labels of separable features labels as they do."""
    x, labels, _ = _blobs(2)
    x = F.normalize(x, dim=1)  # pixel features are unit vectors
    mu = kmeans(x, 4, 20, 0)
    pseudo = assign(x, mu)
    for balance in (True, False):
        clf, agreement = fit_linear_classifier(x, pseudo, 4, epochs=30, lr=0.05, balance=balance, seed=0,
                                               batch_size=64)
        assert clf.shape == (4, 4) and torch.isfinite(clf).all()
        pred = classifier_scores(x.T[None, :, :, None], clf)[0, :, :, 0].argmax(0)
        assert agreement == pytest.approx(pred.eq(pseudo).float().mean().item()) and agreement > 0.99
        assert _purity(pred, labels) > 0.99
    untrained, chance = fit_linear_classifier(x, pseudo, 4, epochs=0, lr=0.05)
    assert chance < 0.9  # the fit, not the initialisation, is what agrees


def test_linear_classifier_depends_on_its_seed_not_on_the_process_random_state():
    """The cluster stage's classifier file must be the same bytes on every run: its initial weights come
    from cluster seed, not from torch's global generator (seeded at random in each process)."""
    x, labels, _ = _blobs(4)
    fits = []
    for global_seed, seed in ((1, 0), (2, 0), (1, 5)):
        torch.manual_seed(global_seed)
        fits.append(fit_linear_classifier(x, labels, 4, epochs=2, lr=0.05, seed=seed, batch_size=64)[0])
    assert torch.equal(fits[0], fits[1]) and not torch.equal(fits[0], fits[2])
