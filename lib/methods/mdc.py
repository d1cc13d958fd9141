"""Modified DeepCluster, PiCIE's baseline (PiCIE Sec. 3.1 and Table 1): DeepCluster for pixels.

One augmented view of each batch (P and G of lib/views, view 1 alone); each
epoch k-means clusters it (lib/deepcluster), and the network learns to
predict its own clusters through a linear 1x1 classifier re-initialised every
epoch, under the within-view loss only (no second view, so no cross-view
term). Scored, as in the paper's Table 1, by a linear classifier fitted on
the k-means labels of its features.
"""
from lib import deepcluster
from lib.deepcluster import clustering_loss, pseudo_labels
from lib.models import describe as describe_network, feature_network


def build(p, in_chans=3):
    return feature_network(p, in_chans)


def mdc_loss(z1, z2, clf, p, labels=None):
    """The within-view loss of the one view against its own clusters (z2 is None)."""
    if labels is None:
        labels = pseudo_labels(z1.detach(), None, clf.levels)
    return clustering_loss(z1, None, clf, labels)


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    return deepcluster.train_one_epoch(model, images, optimizer, p, g, device, epoch, views=1, loss=mdc_loss)


def describe(params):
    a, c = params["aug"], params["cluster"]
    return [describe_network(params),
            f"- Modified DeepCluster: one view (photometric `{a['photometric']}`, geometric `{a['geometric']}`), "
            f"balance `{params['loss']['balance']}`, K `{c['k']}`, K_over `{c['k_over']}`"]
