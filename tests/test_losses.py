import math

import torch
import torch.nn.functional as F

from lib.losses import balance_weights, cluster_loss, overcluster_lambdas, prototype_logits
from lib.deepcluster import Classifiers, Clustering, pseudo_labels
from lib.methods.picie import picie_loss


def test_prototype_logits_are_negative_cosine_distance():
    z = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    mu = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 1.0]])
    s = prototype_logits(z, mu).flatten()
    # d = 1 - cos: 0, 1, 1 + 1/sqrt(2)
    assert torch.allclose(s, torch.tensor([0.0, -1.0, -1.0 - 1 / math.sqrt(2)]), atol=1e-6)


def test_cluster_loss_matches_hand_computed_cross_entropy():
    scores = torch.tensor([0.0, -1.0, -2.0]).view(1, 3, 1, 1)
    expected = -math.log(math.exp(-1.0) / (1 + math.exp(-1.0) + math.exp(-2.0)))
    assert math.isclose(cluster_loss(scores, torch.tensor([[[1]]])).item(), expected, rel_tol=1e-6)


def test_balance_weights_favour_rare_clusters_and_average_one():
    w = balance_weights(torch.tensor([1, 3]))
    # 1/(n+1) = [1/2, 1/4]; scaled so that (1*w0 + 3*w1) / 4 = 1 -> [1.6, 0.8]
    assert torch.allclose(w, torch.tensor([1.6, 0.8]))
    assert w[0] > w[1]
    # loss.balance: proportional (the authors' code): w ~ n = [1, 3]; (1*w0 + 3*w1) / 4 = 1 -> [0.4, 1.2]
    assert torch.allclose(balance_weights(torch.tensor([1, 3]), "proportional"), torch.tensor([0.4, 1.2]))


def test_weighted_loss_upweights_rare_cluster_errors():
    scores = torch.zeros(1, 2, 1, 4)
    scores[0, 0, 0, :3] = 5.0  # the three common-cluster pixels are right
    labels = torch.tensor([[[0, 0, 0, 1]]])  # the rare pixel is wrong
    plain = cluster_loss(scores, labels)
    weighted = cluster_loss(scores, labels, balance_weights(torch.tensor([3, 1])))
    assert weighted > plain


def test_overcluster_lambdas_eq15():
    l1, l2 = overcluster_lambdas(27, 100)
    assert math.isclose(l1, math.log(100) / (math.log(27) + math.log(100)))
    assert math.isclose(l1 + l2, 1.0)
    assert l1 > l2  # the larger clustering is damped


def _setup():
    torch.manual_seed(0)
    z1 = F.normalize(torch.randn(2, 4, 3, 3), dim=1)
    z2 = F.normalize(torch.randn(2, 4, 3, 3), dim=1)
    mu1, mu2 = torch.randn(3, 4), torch.randn(3, 4)
    return z1, z2, mu1, mu2


def _nearest(z, mu):
    d = ((z.permute(0, 2, 3, 1)[..., None, :] - mu) ** 2).sum(-1)
    return d.argmin(-1)


def test_picie_loss_is_within_plus_cross(params):
    p, _ = params(**{"loss.balance": False})
    z1, z2, mu1, mu2 = _setup()
    clf = Classifiers([Clustering(3, (mu1, mu2), (None, None))], "prototype", 4)
    total, parts = picie_loss(z1, z2, clf, p)
    y1, y2 = _nearest(z1, mu1), _nearest(z2, mu2)
    ce = lambda z, mu, y: F.cross_entropy(prototype_logits(z, mu), y)  # noqa: E731
    within = ce(z1, mu1, y1) + ce(z2, mu2, y2)
    cross = ce(z1, mu2, y2) + ce(z2, mu1, y1)
    assert torch.allclose(parts["within"], within)
    assert torch.allclose(parts["cross"], cross)
    assert torch.allclose(total, within + cross)

    p, _ = params(**{"loss.balance": False, "loss.cross": False})
    total, parts = picie_loss(z1, z2, clf, p)
    assert "cross" not in parts and torch.allclose(total, within)

    p, _ = params(**{"loss.balance": False, "loss.equivariance": "mse"})
    total, parts = picie_loss(z1, z2, clf, p)
    assert torch.allclose(parts["cross"], ((z1 - z2) ** 2).sum(1).mean())


def test_picie_loss_with_overclustering_uses_eq15_weights(params):
    p, _ = params(**{"loss.balance": False, "loss.cross": False})
    z1, z2, mu1, mu2 = _setup()
    over = (torch.randn(5, 4), torch.randn(5, 4))
    one = picie_loss(z1, z2, Classifiers([Clustering(3, (mu1, mu2), (None, None))], "prototype", 4), p)[0]
    two_levels = [Clustering(3, (mu1, mu2), (None, None)), Clustering(5, over, (None, None))]
    total, parts = picie_loss(z1, z2, Classifiers(two_levels, "prototype", 4), p)
    l1, l2 = overcluster_lambdas(3, 5)
    assert torch.allclose(total, l1 * one + l2 * parts["within_over"])


def test_linear_classifier_heads_receive_gradients(params):
    p, _ = params(**{"model.classifier": "linear"})
    z1, z2, mu1, mu2 = _setup()
    z1.requires_grad_(True)
    clf = Classifiers([Clustering(3, (mu1, mu2), (torch.ones(3), torch.ones(3)))], "linear", 4)
    total, _ = picie_loss(z1, z2, clf, p)
    total.backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in clf.parameters())
    assert z1.grad.abs().sum() > 0


def test_given_pseudo_labels_are_used(params):
    """Snapshot labels (from the epoch-start network) replace the batch's own assignment."""
    p, _ = params(**{"loss.balance": False, "loss.cross": False})
    z1, z2, mu1, mu2 = _setup()
    clf = Classifiers([Clustering(3, (mu1, mu2), (None, None))], "prototype", 4)
    zeros = torch.zeros(2, 3, 3, dtype=torch.long)
    total, _ = picie_loss(z1, z2, clf, p, labels=[(zeros, zeros + 2)])
    expected = F.cross_entropy(prototype_logits(z1, mu1), zeros) + F.cross_entropy(prototype_logits(z2, mu2), zeros + 2)
    assert torch.allclose(total, expected)
    assert torch.equal(pseudo_labels(z1, z2, clf.levels)[0][0], _nearest(z1, mu1))


def test_dot_scores_and_mean_over_views_are_the_authors_loss(params):
    """loss.logits: dot (logits z . mu with the centroids as they are) and loss.views: mean (each
    two-view term averaged, not summed), the authors' code, against the same computation by hand."""
    z1, z2, mu1, mu2 = _setup()
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)  # the network's features are unit vectors
    mu1, mu2 = 0.7 * F.normalize(mu1, dim=1), 0.7 * F.normalize(mu2, dim=1)  # means of unit vectors: norm < 1
    dot = lambda z, mu: torch.einsum("bdhw,kd->bkhw", z, mu)  # noqa: E731
    assert torch.allclose(prototype_logits(z1, mu1, "dot"), dot(z1, mu1))
    assert not torch.allclose(prototype_logits(z1, mu1, "dot"), prototype_logits(z1, mu1))
    y1, y2 = _nearest(z1, mu1), _nearest(z2, mu2)
    ce = lambda z, mu, y: F.cross_entropy(dot(z, mu), y)  # noqa: E731
    p, _ = params(**{"loss.balance": False, "loss.logits": "dot", "loss.views": "mean"})
    clf = Classifiers([Clustering(3, (mu1, mu2), (None, None))], "prototype", 4, p.loss.logits)
    total, parts = picie_loss(z1, z2, clf, p)
    within = (ce(z1, mu1, y1) + ce(z2, mu2, y2)) / 2
    cross = (ce(z1, mu2, y2) + ce(z2, mu1, y1)) / 2
    assert torch.allclose(parts["within"], within) and torch.allclose(parts["cross"], cross)
    assert torch.allclose(total, within + cross)
    p, _ = params(**{"loss.balance": False, "loss.logits": "dot"})  # summed: twice the mean
    assert torch.allclose(picie_loss(z1, z2, clf, p)[0], 2 * total)


def test_temperature_divides_the_logits_and_lets_confident_pixels_be(params):
    """loss.temperature: logits / T; at T = 0.1 a pixel at its centroid gets (almost) no gradient while
    at T = 1 (Eq. 5) it is still pulled; an ambiguous pixel keeps a gradient at both."""
    z, mu = _setup()[0], torch.randn(3, 4)
    assert torch.allclose(prototype_logits(z, mu, temperature=0.1), prototype_logits(z, mu) / 0.1)
    assert torch.allclose(prototype_logits(z, mu, "dot", 0.5), prototype_logits(z, mu, "dot") * 2)
    mu = torch.eye(4)[:3]
    confident = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1)  # exactly at centroid 0
    ambiguous = F.normalize(torch.tensor([1.0, 1.0, 0.0, 0.0]), dim=0).view(1, 4, 1, 1)  # between 0 and 1
    label = torch.zeros(1, 1, 1, dtype=torch.long)

    def pull(x, t):  # the loss's gradient on a pixel off its centroid, along the sphere
        x = x.clone().requires_grad_()
        cluster_loss(prototype_logits(x, mu, temperature=t), label).backward()
        g = x.grad.flatten()
        return (g - (g @ x.detach().flatten()) * x.detach().flatten()).norm().item()

    assert pull(confident, 0.1) < 1e-3 < 0.1 < pull(confident, 1.0)
    assert pull(ambiguous, 0.1) > 0.1 and pull(ambiguous, 1.0) > 0.1
    p, _ = params(**{"loss.temperature": 0.1})
    z1, z2, mu1, mu2 = _setup()
    cold = Classifiers([Clustering(3, (mu1, mu2), (None, None))], "prototype", 4, p.loss.logits, p.loss.temperature)
    warm = Classifiers([Clustering(3, (mu1, mu2), (None, None))], "prototype", 4)
    assert torch.allclose(cold.scores(z1, 0, 0), warm.scores(z1, 0, 0) * 10)
    assert not torch.allclose(picie_loss(z1, z2, cold, p)[0], picie_loss(z1, z2, warm, p)[0])
