"""k-means, nearest-centroid assignment and the scored pixel classifiers.

k-means runs on the backend `cluster.backend` names: faiss (on the GPU when
the features are on one and faiss has GPU support, else on the CPU), or a
plain torch k-means on the features' own device (a CUDA run with faiss-cpu:
no copy of the sample back to the host). Both seed with the same k-means++
draw. Memory stays bounded because callers pass a bounded sample
(`cluster.max_points`), never a whole dataset.

What `evaluate` and `predict` score is a pixel classifier, a (k, d + 1)
array [W | b]: the cluster of a feature z is argmax_k W_k . z + b_k. Every
way a method labels pixels is one (PiCIE Table 1's "Classifier" column):
- prototype: the nearest k-means centroid. ||z - mu_k||^2 = ||z||^2 -
  2 mu_k . z + ||mu_k||^2 and ||z||^2 is the same for every k, so W = 2 mu,
  b = -||mu||^2; bilinear upsampling, being linear, keeps that equivalence.
- linear: a 1x1 classifier fitted on the k-means labels of the features.
- argmax: the identity, for networks that output their own assignments.
"""
import numpy as np
import torch
import torch.nn.functional as F

from lib.errors import ParamsError
from lib.losses import balance_weights, cluster_loss

BACKENDS = ("faiss", "torch")


def kmeans_pp_init(x, k, g, max_points=10000):
    """k-means++ seeding (on at most max_points rows): far fewer bad local minima than random seeds."""
    if x.shape[0] > max_points:
        x = x[torch.randperm(x.shape[0], generator=g)[:max_points].to(x.device)]
    first = int(torch.randint(0, x.shape[0], (1,), generator=g))
    mu = [x[first]]
    d2 = ((x - mu[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = (d2 / d2.sum().clamp(min=1e-12)).cpu()
        nxt = int(torch.multinomial(probs, 1, generator=g)) if probs.sum() > 0 else 0
        mu.append(x[nxt])
        d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    return torch.stack(mu)


def _kmeans_torch(x, k, niter, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    mu = kmeans_pp_init(x, k, g)
    for _ in range(niter):
        labels = assign(x, mu)
        sums = torch.zeros_like(mu).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        mu = torch.where(empty[:, None], mu, sums / counts.clamp(min=1)[:, None])
        if empty.any():  # re-seed empty clusters on random points, as faiss does
            re = torch.randint(0, x.shape[0], (int(empty.sum()),), generator=g).to(x.device)
            mu[empty] = x[re]
    return mu


def _kmeans_faiss(x, k, niter, seed):
    try:
        import faiss
    except ImportError:
        raise ParamsError("cluster.backend is 'faiss' but faiss is not installed (pip install faiss-cpu, or "
                          "set cluster.backend: torch)") from None
    xs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    gpu = x.device.type == "cuda" and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(xs.shape[1], k, niter=niter, seed=seed, gpu=gpu,
                      max_points_per_centroid=max(256, xs.shape[0] // k + 1), verbose=False)
    init = kmeans_pp_init(x.cpu(), k, torch.Generator().manual_seed(seed)).numpy()
    km.train(xs, init_centroids=init)
    return torch.from_numpy(km.centroids.copy()).to(x.device)


def inertia(x, mu, chunk=65536, labels=None):
    """Sum of squared distances of the rows of x to their nearest centroid (k-means' objective);
    `labels`: that assignment, when the caller has made it already."""
    mu = mu.to(x)
    labels = assign(x, mu, chunk) if labels is None else labels
    return float(sum(((xc - mu[lc]) ** 2).sum() for xc, lc in zip(x.split(chunk), labels.split(chunk))))


def kmeans(x, k, niter=20, seed=0, backend="faiss", restarts=1):
    """Centroids (k, d) of the rows of x (n, d) by the named backend; returns a tensor on x's device.

    restarts > 1: that many runs (seeds seed, seed + 1, ...), the one of lowest inertia kept. A
    single run's result depends on its seeding (bench/eval_noise.py measures by how much); for the
    scored clustering that is noise in every comparison of two runs."""
    if restarts > 1:
        runs = [kmeans(x, k, niter, seed + r, backend) for r in range(restarts)]
        xf = x.float()
        return min(runs, key=lambda mu: inertia(xf, mu))
    if backend not in BACKENDS:
        raise ParamsError(f"k-means backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if x.shape[0] < k:
        raise ParamsError(f"k-means was asked for {k} clusters (cluster.k, or cluster.k_over) from only "
                          f"{x.shape[0]} pixel features: lower it, or give k-means more points "
                          "(cluster.images, cluster.max_points; more or larger images)")
    x = x.float()
    return (_kmeans_faiss if backend == "faiss" else _kmeans_torch)(x, k, niter, seed)


def assign(z, mu, chunk=65536):
    """The nearest centroid (squared Euclidean) of each feature: of rows z (n, d) -> (n,), or of feature maps
    (B, d, h, w) -> (B, h, w). The one nearest-centroid labelling: the argmax of the prototype classifier's
    scores, as `evaluate` labels pixels (|z|^2, the same for every centroid, is left out)."""
    clf = prototype_classifier(mu).to(z)
    if z.dim() == 4:
        return classifier_scores(z, clf).argmax(1)
    w, b = clf[:, :-1], clf[:, -1]
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    for i in range(0, z.shape[0], chunk):
        out[i:i + chunk] = (z[i:i + chunk] @ w.T + b).argmax(1)
    return out


def prototype_classifier(mu):
    """The nearest-centroid classifier of centroids mu (k, d) as [W | b] (module docstring)."""
    mu = mu.float()
    return torch.cat([2 * mu, -(mu * mu).sum(1, keepdim=True)], 1)


def argmax_classifier(k):
    """The identity [I | 0]: the argmax of features that are already cluster assignments."""
    return torch.cat([torch.eye(k), torch.zeros(k, 1)], 1)


def fit_linear_classifier(x, labels, k, epochs, lr, balance=True, seed=0, batch_size=4096):
    """A linear classifier [W | b] fitted by Adam on the cross-entropy of labels (k-means) given x (n, d).

    `balance` weighs clusters as the training loss does (loss.balance: by their
    size, by 1 / their size, or alike when false).
    Returns the classifier and the fraction of x it labels as `labels` do.
    """
    g = torch.Generator().manual_seed(seed)
    x, labels = x.float(), labels.long()
    with torch.random.fork_rng(devices=[]):  # the head's initial weights from the seed, not the process's RNG
        torch.manual_seed(seed)
        head = torch.nn.Linear(x.shape[1], k)
    weight = balance_weights(torch.bincount(labels, minlength=k), balance) if balance else None
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = cluster_loss(head(x[idx]), labels[idx], weight)
            if not torch.isfinite(loss):
                raise FloatingPointError("linear classifier fit: non-finite loss (lower cluster.linear_lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        hits = sum(int(head(x[i:i + batch_size]).argmax(1).eq(labels[i:i + batch_size]).sum())
                   for i in range(0, len(x), batch_size))
        return torch.cat([head.weight, head.bias[:, None]], 1), hits / max(len(x), 1)


def classifier_scores(z, clf):
    """Scores W_k . z + b_k of features z (B, d, h, w) under clf (k, d + 1) -> (B, k, h, w)."""
    clf = clf.to(z)
    return torch.einsum("bdhw,kd->bkhw", z, clf[:, :-1]) + clf[:, -1].view(1, -1, 1, 1)


def upsample_scores(s, size):
    """Scores (B, k, h, w) upsampled bilinearly to size (int: square, or (h, w)): how every label map is
    brought to its image, with or without flip averaging and CRF (lib/scoring.py)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(s.float(), size=size, mode="bilinear", align_corners=False)


def predict_clusters(z, clf, size):
    """Cluster id per pixel: the classifier's scores upsampled to size, argmax, as evaluated."""
    return upsample_scores(classifier_scores(z, clf), size).argmax(1)
