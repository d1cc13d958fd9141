"""The PiCIE clustering loss (Eq. 5), its cluster-balance weights and Eq. 15's lambdas."""
import math

import torch
import torch.nn.functional as F

from lib.distributed import all_sum, world


def prototype_logits(z, mu, logits="cosine", temperature=1.0):
    """The training logits (loss.logits) of features z (B, d, h, w) for centroids mu (K, d) -> (B, K, h, w):
    -d(z, mu_k) with d the cosine distance (Eq. 5; "cosine"), or the dot product z . mu_k with the centroids
    as they are ("dot": the authors' code, whose classifier is a 1x1 conv holding the centroids, means of unit
    vectors of norm below 1, so its logits are smaller and its softmax flatter); divided by `temperature`.

    Why a temperature: at 1 (Eq. 5 as written) the logits of unit vectors span at most 2, so the softmax
    stays nearly flat and every pixel, however well it already sits in its cluster, is pulled towards its
    centroid with almost full force; a lower temperature lets confident pixels be and spends the
    gradient on ambiguous ones (as prototype losses with cosine logits do: SwAV, DINO)."""
    if logits == "dot":
        s = torch.einsum("bdhw,kd->bkhw", z, mu.to(z))
    else:
        s = torch.einsum("bdhw,kd->bkhw", F.normalize(z, dim=1), F.normalize(mu.to(z), dim=1)) - 1.0
    return s / temperature  # exact at 1: the same bits as Eq. 5 unscaled


def cluster_loss(scores, labels, weight=None):
    """Cross-entropy of pseudo-labels under the scores (Eq. 5), optionally class-weighted.

    With weights, the mean is weighted (sum w_y * l / sum w_y), so a batch's
    loss keeps the scale of the unweighted loss. Under torch.distributed the
    denominator is the whole batch's (over the processes' count), so that the
    processes' mean loss, and DDP's mean gradient, are one process's.
    """
    if weight is None or world() == 1:
        return F.cross_entropy(scores, labels, weight=None if weight is None else weight.to(scores))
    w = weight.to(scores)
    norm = all_sum(w[labels].sum().detach()) / world()
    return F.cross_entropy(scores, labels, weight=w, reduction="sum") / norm


def balance_weights(counts, kind=True):
    """Per-cluster weights of the loss (loss.balance), scaled so that the average weight over the
    clustered pixels is 1.

    kind "proportional" (the default): w_k proportional to n_k, as the authors' code weighs them; their
    Table 6 "no balance" row is measured against it, and the tuning study chose it (reports/tuning.md).
    kind true: w_k proportional to 1 / (n_k + 1) (the +1 keeps an empty cluster finite): rare
    clusters weigh more, countering cluster-size imbalance as the paper says it means to (PiCIE issue 28
    reads the authors' weights as the opposite of that intent).
    """
    counts = counts.float()
    w = counts.clone() if kind == "proportional" else 1.0 / (counts + 1.0)
    return w * counts.sum() / (w * counts).sum().clamp(min=1e-12)


def overcluster_lambdas(k1, k2):
    """Eq. 15: lambda_K1 = log K2 / (log K1 + log K2), lambda_K2 = log K1 / (...)."""
    a, b = math.log(k1), math.log(k2)
    return b / (a + b), a / (a + b)
