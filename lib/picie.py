"""PiCIE (Sec. 3, Algorithm 1): pixel clustering with photometric invariance and
geometric equivariance.

Per epoch:
1. `cluster_pass`: with the network in eval mode (so batch-norm statistics do
   not drift while features are being clustered), compute both views of a
   seeded subset of images and k-means each view on a bounded pixel sample
   (`cluster.images`, `cluster.max_points`).
2. `train_one_epoch`: for each batch, draw P1, P2, G; view 1 = f(G(P1(x))),
   view 2 = G(f(P2(x))); pseudo-labels are the nearest centroids of the
   epoch-start network's features (`cluster.labels: snapshot`), and the loss
   is within-view + cross-view cross-entropy under the prototype classifier.

Departure from the authors' code, for speed: the authors label every pixel
in a second full pass and write the labels to disk (~27 of ~80 minutes of a
COCO epoch). Here a frozen snapshot of the epoch-start network labels each
training batch's own views as it comes (one no-grad forward, the same
labels, no disk). `cluster.labels: online` labels from the training forward
pass itself instead (no extra forward, but a moving target).
"""
import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from lib.clustering import assign, kmeans, neg_sq_distance
from lib.features import to_tensor
from lib.loop import now, run_batches, use_amp
from lib.losses import balance_weights, cluster_loss, overcluster_lambdas, prototype_scores
from lib.models.fpn import STRIDE
from lib.transforms import apply_geometric, photometric, resize, sample_geometric


def single_view(p):
    return p.method == "mdc"


def augment(x, p, g):
    """Draw P1, P2 and G for a batch: returns (input of view 1, input of view 2, G or None).

    x holds training images at data.train_res; both views come out at data.res
    (PiCIE on COCO: crops of the 640 px image for view 1, the image resized to
    320 for view 2).
    """
    x1 = photometric(x, g) if p.aug.photometric else x
    x2 = None
    if not single_view(p):  # Modified DeepCluster has one view, its labels its own
        x2 = photometric(x, g) if p.aug.photometric else x
    theta = None
    if p.aug.geometric:
        theta = sample_geometric(x.shape[0], g, scale=(p.aug.crop_scale, 1.0))
        x1 = apply_geometric(x1, theta, p.data.res)
    else:
        x1 = resize(x1, p.data.res)
    if x2 is None:
        return x1, None, None
    return x1, resize(x2, p.data.res), theta


def forward_views(model, x1, x2, theta, amp=False, normalize=True):
    """z1 = f(G(P1 x)) and z2 = G(f(P2 x)), both (B, d, H/4, W/4), unit norm (normalize=False: the
    FPN output before normalisation, which IIC's heads take).

    Both views go through the network as one batch of 2B: one pass is faster
    than two, and batch-norm sees both views.
    """
    b = x1.shape[0]
    if x2 is None:  # one view (Modified DeepCluster)
        with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=amp):
            return model(x1, normalize).float(), None
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=amp):
        z = model(torch.cat([x1, x2]), normalize)
    z = z.float()
    z1, z2 = z[:b], z[b:]
    if theta is not None:
        z2 = apply_geometric(z2, theta, z1.shape[-1])
        z2 = F.normalize(z2, dim=1) if normalize else z2
    return z1, z2


@dataclass
class Clustering:
    """Centroids and balance weights of one clustering level (K or K_over), per view."""

    k: int
    centroids: tuple  # (mu1, mu2); the same tensor twice under cluster.single
    weights: tuple  # (w1, w2) or (None, None)


def _sample_pixels(z, n, g):
    """n random pixel features per image of z (B, d, h, w) -> (B * n, d)."""
    b, d, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(b, h * w, d)
    idx = torch.rand(b, h * w, generator=g).argsort(1)[:, :n].to(z.device)
    return torch.gather(flat, 1, idx[..., None].expand(-1, -1, d)).reshape(-1, d)


@torch.no_grad()
def cluster_pass(model, images, p, g, device, epoch):
    """k-means of both views on a bounded sample of pixels.

    Returns one Clustering per level, and the seconds spent in the forward
    passes and in k-means.
    """
    t0 = time.perf_counter()
    model.eval()
    n = len(images)
    m = min(n, p.cluster.images) if p.cluster.images > 0 else n
    order = np.sort(torch.randperm(n, generator=g)[:m].numpy())
    fres = p.data.res // STRIDE
    per_image = max(1, min(fres * fres, math.ceil(p.cluster.max_points / m)))
    amp = use_amp(p, device)
    feats1, feats2 = [], []
    for i in tqdm(range(0, m, p.train.batch_size), desc=f"epoch {epoch} cluster", leave=False):
        x = to_tensor(images[order[i:i + p.train.batch_size]], device)
        z1, z2 = forward_views(model, *augment(x, p, g), amp=amp)
        feats1.append(_sample_pixels(z1, per_image, g))
        feats2.append(feats1[-1] if z2 is None else _sample_pixels(z2, per_image, g))
    x1, x2 = torch.cat(feats1), torch.cat(feats2)
    t1 = time.perf_counter()
    if not (torch.isfinite(x1).all() and torch.isfinite(x2).all()):
        raise FloatingPointError(f"non-finite features in the clustering pass of epoch {epoch}: stopping "
                                 "(the network diverged; lower train.lr?)")
    levels = []
    for k in [p.cluster.k] + ([p.cluster.k_over] if p.cluster.k_over else []):
        seed = p.seed * 1000 + epoch
        if p.cluster.single or single_view(p):  # one clustering (of view 2, whose labels are G of the image's)
            mu = kmeans(x2, k, p.cluster.niter, seed)
            mus = (mu, mu)
        else:
            mus = (kmeans(x1, k, p.cluster.niter, seed), kmeans(x2, k, p.cluster.niter, seed + 1))
        weights = (None, None)
        if p.loss.balance:
            weights = tuple(balance_weights(torch.bincount(assign(xv, mu), minlength=k))
                            for xv, mu in zip((x1, x2), mus))
        levels.append(Clustering(k, mus, weights))
    model.train()
    return levels, {"cluster_forward": t1 - t0, "kmeans": time.perf_counter() - t1}


class Classifiers(nn.Module):
    """The scorer of each (level, view): prototypes (non-parametric) or a 1x1 linear layer.

    Linear heads are the Table 5 'no non-parametric' ablation; like DeepCluster's
    they are re-initialised every epoch, since the clusters they predict are new.
    """

    def __init__(self, levels, kind, dim):
        super().__init__()
        self.levels, self.kind = levels, kind
        self.heads = nn.ModuleList()
        if kind == "linear":
            for c in levels:
                shared = c.centroids[0] is c.centroids[1]
                h1 = nn.Conv2d(dim, c.k, 1)
                self.heads.append(nn.ModuleList([h1, h1 if shared else nn.Conv2d(dim, c.k, 1)]))

    def scores(self, z, level, view):
        if self.kind == "linear":
            return self.heads[level][view](z)
        return prototype_scores(z, self.levels[level].centroids[view])


def pseudo_labels(t1, t2, levels):
    """k-means assignment (Eq. 8-9) of both views' features to each level's centroids."""
    return [(neg_sq_distance(t1, c.centroids[0]).argmax(1),
             None if t2 is None else neg_sq_distance(t2, c.centroids[1]).argmax(1)) for c in levels]


def picie_loss(z1, z2, clf, p, labels=None):
    """L_within + L_cross (Eq. 10, 11, 14) per level, combined with Eq. 15's lambdas.

    `labels` are the pseudo-labels of each level and view; by default they are
    assigned from z1 and z2 themselves (detached).
    """
    levels = clf.levels
    if labels is None:
        labels = pseudo_labels(z1.detach(), None if z2 is None else z2.detach(), levels)
    lambdas = overcluster_lambdas(levels[0].k, levels[1].k) if len(levels) == 2 else (1.0,)
    total, parts = 0.0, {}
    for li, (lam, c) in enumerate(zip(lambdas, levels)):
        w1, w2 = c.weights
        y1, y2 = labels[li]
        within = cluster_loss(clf.scores(z1, li, 0), y1, w1)
        if z2 is not None:
            within = within + cluster_loss(clf.scores(z2, li, 1), y2, w2)
        loss = within
        tag = "" if li == 0 else "_over"
        parts[f"within{tag}"] = within.detach()
        if p.loss.cross and z2 is not None:
            if p.loss.equivariance == "cluster":
                cross = cluster_loss(clf.scores(z1, li, 1), y2, w2) + cluster_loss(clf.scores(z2, li, 0), y1, w1)
            else:  # Table 6 'MSE eqv.': the cross-view loss replaced by feature MSE
                cross = (z1 - z2).pow(2).sum(1).mean()
            loss = loss + cross
            parts[f"cross{tag}"] = cross.detach()
        total = total + lam * loss
    return total, parts


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    """One PiCIE (or Modified DeepCluster) epoch; returns mean losses and where the time went (seconds)."""
    t0 = time.perf_counter()
    levels, times = cluster_pass(model, images, p, g, device, epoch)
    clf = Classifiers(levels, p.model.classifier, p.model.dim).to(device)
    optimizers = [optimizer] + ([torch.optim.Adam(clf.parameters(), lr=p.train.lr)] if clf.heads else [])
    # Labels from the network as it was when the epoch's clusters were made (as
    # the authors' labelling pass), computed batch by batch instead of in a
    # separate pass written to disk; or from the training forward pass itself.
    snapshot = copy.deepcopy(model).eval() if p.cluster.labels == "snapshot" else None
    times["cluster"] = time.perf_counter() - t0
    amp = use_amp(p, device)

    def step(x, times):
        t = now(device)
        views = augment(x, p, g)
        ta = now(device)
        times["augment"] += ta - t
        labels = None
        if snapshot is not None:
            with torch.no_grad():
                labels = pseudo_labels(*forward_views(snapshot, *views, amp=amp), levels)
        times["label"] += now(device) - ta
        return picie_loss(*forward_views(model, *views, amp=amp), clf, p, labels)

    return run_batches(model, images, p, g, device, epoch, step, optimizers, t0, times)
