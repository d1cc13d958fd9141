"""The scheme PiCIE and Modified DeepCluster share (DeepCluster, Caron et al. 2018; PiCIE Sec. 3.1,
Algorithm 1): each epoch, cluster the network's pixel features, then train the network to predict
its own clusters.

Per epoch:
1. `cluster_pass`: with the network in eval mode (so batch-norm statistics do
   not drift while features are being clustered), compute the views of a
   seeded subset of images and k-means each view on a bounded pixel sample
   (`cluster.images`, `cluster.max_points`); one view, or `cluster.single`,
   makes one clustering.
2. `train_one_epoch`: for each batch, its views (lib/views); pseudo-labels
   are the nearest centroids of the epoch-start network's features
   (`cluster.labels: snapshot`), and the method's loss scores the features
   against them under the classifiers (`model.classifier`).

Departure from the authors' code, for speed: the authors label every pixel
in a second full pass and write the labels to disk (docs/method.md says
what it costs them). Here a frozen snapshot of the epoch-start network labels each
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
from tqdm import tqdm

from lib.clustering import assign, fit_linear_classifier, inertia, kmeans
from lib.distributed import all_cat, broadcast, is_main, rows
from lib.features import to_tensor
from lib.loop import now, run_batches, use_amp
from lib.losses import balance_weights, cluster_loss, overcluster_lambdas, prototype_logits
from lib.views import augment, forward_views


@dataclass
class Clustering:
    """Centroids and balance weights of one clustering level (K or K_over), per view."""

    k: int
    centroids: tuple  # (mu1, mu2); the same tensor twice when there is one clustering
    weights: tuple  # (w1, w2) or (None, None)
    samples: tuple = (None, None)  # the pixel features clustered (x1, x2), kept while linear heads are fitted
    inertia: float = float("nan")  # mean squared distance of view 1's sample to its nearest centroid


def _sample_pixels(z, n, g, batch):
    """n random pixel features per image of z (b, d, h, w) -> (b * n, d), z being this process's rows
    of a batch of `batch` images: the draw is the whole batch's, as on one process (lib/distributed)."""
    b, d, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(b, h * w, d)
    idx = torch.rand(batch, h * w, generator=g).argsort(1)[rows(batch), :n].to(z.device)
    return torch.gather(flat, 1, idx[..., None].expand(-1, -1, d)).reshape(-1, d)


@torch.no_grad()
def cluster_pass(model, images, p, g, device, epoch, views=2):
    """k-means of each view on a bounded sample of pixels.

    Returns one Clustering per level, and the seconds spent in the forward
    passes and in k-means.
    """
    t0 = time.perf_counter()
    # cluster.bn: eval (running statistics, which the pass leaves alone) or train (batch statistics, and the
    # running ones updated, as the authors' code: the features are clustered in the mode they are trained in)
    model.train(p.cluster.bn == "train")
    n = len(images)
    m = min(n, p.cluster.images) if p.cluster.images > 0 else n
    order = np.sort(torch.randperm(n, generator=g)[:m].numpy())
    fres = p.data.res // model.stride
    per_image = max(1, min(fres * fres, math.ceil(p.cluster.max_points / m)))
    amp = use_amp(p, device)
    feats1, feats2 = [], []
    for i in tqdm(range(0, m, p.train.batch_size), desc=f"epoch {epoch} cluster", leave=False, disable=not is_main()):
        x = to_tensor(images[order[i:i + p.train.batch_size]], device)
        z1, z2 = forward_views(model, *augment(x, p, g, views), amp=amp)
        # every process's rows of the batch, in rank order: the sample one process would have drawn
        feats1.append(all_cat(_sample_pixels(z1, per_image, g, len(x))))
        feats2.append(feats1[-1] if z2 is None else all_cat(_sample_pixels(z2, per_image, g, len(x))))
    x1, x2 = torch.cat(feats1), torch.cat(feats2)
    t1 = time.perf_counter()
    if not (torch.isfinite(x1).all() and torch.isfinite(x2).all()):
        raise FloatingPointError(f"non-finite features in the clustering pass of epoch {epoch}: stopping "
                                 "(the network diverged; lower train.lr?)")
    levels = []
    for k in [p.cluster.k] + ([p.cluster.k_over] if p.cluster.k_over else []):
        one = p.cluster.single or views == 1  # one clustering (of view 2, whose labels are G of the image's)
        mus, weights, spread = _kmeans_level(x1, x2, k, one, p, epoch) if is_main() else (
            tuple(torch.empty(k, x1.shape[1], device=x1.device) for _ in range(1 if one else 2)),
            tuple(torch.empty(k, device=x1.device) if p.loss.balance else None for _ in range(2)), float("nan"))
        # k-means once, on the first process; the others get its centroids and weights
        mus = tuple(broadcast(list(mus), x1.device))
        mus = mus * 2 if one else mus
        weights = tuple(broadcast(list(weights), x1.device))
        keep = p.cluster.head_fit > 0 and p.model.classifier == "linear"
        levels.append(Clustering(k, mus, weights, (x1, x2) if keep else (None, None), spread))
    model.train()
    return levels, {"cluster_forward": t1 - t0, "kmeans": time.perf_counter() - t1}


def _kmeans_level(x1, x2, k, one, p, epoch):
    """One level's centroids (one tuple entry with a single clustering, else one per view), balance
    weights per view ((None, None) without loss.balance) and view 1's mean k-means inertia (logged only
    by the first process, which alone computes it)."""
    seed = p.seed * 1000 + epoch
    if one:
        mus = (kmeans(x2, k, p.cluster.niter, seed, p.cluster.backend),)
    else:
        mus = (kmeans(x1, k, p.cluster.niter, seed, p.cluster.backend),
               kmeans(x2, k, p.cluster.niter, seed + 1, p.cluster.backend))
    mu1, mu2 = mus * 2 if one else mus
    labels1 = assign(x1, mu1)  # one assignment of view 1's sample for its weights and its inertia
    weights = (None, None)
    if p.loss.balance:
        weights = tuple(balance_weights(torch.bincount(labels, minlength=k), p.loss.balance)
                        for labels in (labels1, assign(x2, mu2)))
    return mus, weights, inertia(x1, mu1, labels=labels1) / max(len(x1), 1)


class Classifiers(nn.Module):
    """The scorer of each (level, view): prototypes (non-parametric) or a 1x1 linear layer.

    Linear heads (PiCIE's Table 5 'no non-parametric' ablation, and Modified
    DeepCluster's classifier) are re-initialised every epoch, as DeepCluster's,
    since the clusters they predict are new.
    """

    def __init__(self, levels, kind, dim, logits="cosine", temperature=1.0):
        super().__init__()
        self.levels, self.kind, self.logits, self.temperature = levels, kind, logits, temperature
        self.heads = nn.ModuleList()
        if kind == "linear":
            for c in levels:
                shared = c.centroids[0] is c.centroids[1]
                h1 = nn.Conv2d(dim, c.k, 1)
                self.heads.append(nn.ModuleList([h1, h1 if shared else nn.Conv2d(dim, c.k, 1)]))

    def fit_heads(self, epochs, lr, balance, seed):
        """Fit each fresh linear head on its view's clustered pixels and their k-means labels before the
        network trains under it (`cluster.head_fit`), so that the backbone's first gradients of the epoch
        come from a head that predicts the clusters instead of a random one. The samples are then let go."""
        for li, c in enumerate(self.levels):
            done = set()
            for view, (x, mu) in enumerate(zip(c.samples, c.centroids)):
                head = self.heads[li][view]
                if id(head) in done:  # one clustering, one head shared by both views
                    continue
                wb, _ = fit_linear_classifier(x, assign(x, mu), c.k, epochs, lr, balance, seed + 7 * li + view)
                with torch.no_grad():
                    head.weight.copy_(wb[:, :-1, None, None])
                    head.bias.copy_(wb[:, -1])
                done.add(id(head))
            c.samples = (None, None)

    def scores(self, z, level, view):
        if self.kind == "linear":
            return self.heads[level][view](z)
        return prototype_logits(z, self.levels[level].centroids[view], self.logits, self.temperature)


def pseudo_labels(t1, t2, levels):
    """k-means assignment (PiCIE Eq. 8-9) of each view's features to each level's centroids."""
    return [(assign(t1, c.centroids[0]), None if t2 is None else assign(t2, c.centroids[1])) for c in levels]


def clustering_loss(z1, z2, clf, labels, cross=None, views="sum"):
    """Sum over levels, weighted by PiCIE Eq. 15's lambdas, of the within-view loss (each view's
    features against its own labels, Eq. 10) plus, where given, cross(level, y1, y2) (Eq. 11), a sum
    of one term per view. views="mean" halves both two-view terms (the authors' code averages them).
    Returns the loss and its detached parts (within, cross; `_over` for the second level)."""
    scale = 0.5 if views == "mean" and z2 is not None else 1.0
    levels = clf.levels
    lambdas = overcluster_lambdas(levels[0].k, levels[1].k) if len(levels) == 2 else (1.0,)
    total, parts = 0.0, {}
    for li, (lam, c) in enumerate(zip(lambdas, levels)):
        w1, w2 = c.weights
        y1, y2 = labels[li]
        within = cluster_loss(clf.scores(z1, li, 0), y1, w1)
        if z2 is not None:
            within = (within + cluster_loss(clf.scores(z2, li, 1), y2, w2)) * scale
        loss = within
        tag = "" if li == 0 else "_over"
        parts[f"within{tag}"] = within.detach()
        if cross is not None:
            term = cross(li, y1, y2) * scale
            loss = loss + term
            parts[f"cross{tag}"] = term.detach()
        total = total + lam * loss
    return total, parts


def train_one_epoch(model, images, optimizer, p, g, device, epoch, views, loss):
    """One epoch of clustering and learning the clusters; returns mean losses and where the time went
    (seconds). loss(z1, z2, clf, p, labels) -> (loss, parts) is the method's."""
    t0 = time.perf_counter()
    levels, times = cluster_pass(model, images, p, g, device, epoch, views)
    clf = Classifiers(levels, p.model.classifier, p.model.dim, p.loss.logits, p.loss.temperature).to(device)
    if clf.heads and p.cluster.head_fit > 0:
        clf.fit_heads(p.cluster.head_fit, p.cluster.linear_lr, p.loss.balance, p.seed * 1000 + epoch)
    optimizers = [optimizer] + ([torch.optim.Adam(clf.parameters(), lr=p.train.lr)] if clf.heads else [])
    # Labels from the network as it was when the epoch's clusters were made (as
    # the authors' labelling pass), computed batch by batch instead of in a
    # separate pass written to disk; or from the training forward pass itself.
    snapshot = copy.deepcopy(model).eval() if p.cluster.labels == "snapshot" else None
    times["cluster"] = time.perf_counter() - t0
    amp = use_amp(p, device)

    def step(x, times):
        t = now(device)
        batch_views = augment(x, p, g, views)
        ta = now(device)
        times["augment"] += ta - t
        labels = None
        if snapshot is not None:
            with torch.no_grad():
                labels = pseudo_labels(*forward_views(snapshot, *batch_views, amp=amp), levels)
        times["label"] += now(device) - ta
        return loss(*forward_views(model, *batch_views, amp=amp), clf, p, labels)

    stats, times = run_batches(model, images, p, g, device, epoch, step, optimizers, t0, times, modules=[clf])
    # logged: how tight the epoch's clusters are, and a check that several processes cluster what one would
    stats["kmeans_inertia"] = levels[0].inertia
    return stats, times
