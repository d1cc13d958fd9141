"""PiCIE (Cho et al., CVPR 2021; Sec. 3, Algorithm 1): pixel clustering with invariance to
photometric and equivariance to geometric transforms.

Two views of each batch (lib/views): view 1 = f(G(P1 x)), view 2 = G(f(P2 x)).
Each epoch clusters both views (lib/deepcluster); the loss is, per clustering
level, the within-view loss (each view against its own clusters, Eq. 10) plus
the cross-view loss (each view against the other's clusters, Eq. 11), scored
by the non-parametric prototype classifier (cosine to the centroids, Eq. 5),
the levels K and K_over weighted by Eq. 15. Its switches are the paper's
ablations: aug.* (Table 5), loss.cross, loss.balance, loss.equivariance: mse
and cluster.single (Table 6), model.classifier: linear (Table 5), cluster.k_over
(+H). Scored by k-means on its features, nearest centroid (Table 1).
"""
from lib import deepcluster
from lib.deepcluster import clustering_loss, pseudo_labels
from lib.losses import cluster_loss
from lib.models import describe as describe_network, feature_network


def build(p, in_chans=3):
    return feature_network(p, in_chans)


def picie_loss(z1, z2, clf, p, labels=None):
    """L_within + L_cross (Eq. 10, 11, 14) per level, combined with Eq. 15's lambdas.

    `labels` are the pseudo-labels of each level and view; by default they are
    assigned from z1 and z2 themselves (detached).
    """
    if labels is None:
        labels = pseudo_labels(z1.detach(), z2.detach(), clf.levels)

    def cross(li, y1, y2):
        if p.loss.equivariance == "mse":  # Table 6 'MSE eqv.': the cross-view loss replaced by feature MSE
            return (z1 - z2).pow(2).sum(1).mean()
        w1, w2 = clf.levels[li].weights
        return cluster_loss(clf.scores(z1, li, 1), y2, w2) + cluster_loss(clf.scores(z2, li, 0), y1, w1)

    return clustering_loss(z1, z2, clf, labels, cross if p.loss.cross else None, p.loss.views)


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    """One PiCIE epoch: both views clustered, then within- and cross-view losses on every batch."""
    return deepcluster.train_one_epoch(model, images, optimizer, p, g, device, epoch, views=2, loss=picie_loss)


def describe(params):
    """The report's lines on this run's method."""
    a, lo, c = params["aug"], params["loss"], params["cluster"]
    return [describe_network(params),
            f"- PiCIE switches: photometric `{a['photometric']}`, geometric `{a['geometric']}`, cross "
            f"`{lo['cross']}`, balance `{lo['balance']}`, equivariance `{lo['equivariance']}`, single "
            f"`{c['single']}`, K `{c['k']}`, K_over `{c['k_over']}`"]
