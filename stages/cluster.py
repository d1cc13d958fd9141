"""Stage `cluster`: the pixel classifier that is scored -> models/classifier.npy.

A (k, d + 1) array [W | b] (lib/clustering): k-means (cluster.k) on the
dumped training pixels, then, by model.classifier, the nearest-centroid
classifier (prototype) or a linear classifier fitted on the k-means labels
(linear: PiCIE Table 1's "No Train / Linear" and Modified DeepCluster). For
methods scored by their own argmax (IIC, InfoSeg: the dump holds their
assignments) it is the identity, so that `evaluate` stays one code path.
"""
import h5py
import numpy as np
import torch
import typer

from lib.cli import user_errors
from lib.clustering import (argmax_classifier, assign, fit_linear_classifier, kmeans, prototype_classifier,
                            scoring)
from lib.config import load_params
from lib.io import atomic_path


@user_errors
def main(features: str = "features/features.h5", out: str = "models/classifier.npy", params: str = "params.yaml"):
    p = load_params(params)
    with h5py.File(features, "r") as f:
        x = torch.from_numpy(f["train/features"][:].astype(np.float32))
        how = scoring(f.attrs.get("scoring", "kmeans"), p)
    if how == "argmax":
        clf = argmax_classifier(x.shape[1])
        done = f"identity on {x.shape[1]} assignments (the network's own argmax is scored)"
    else:
        mu = kmeans(x, p.cluster.k, p.cluster.niter, p.seed)
        done = f"k-means: {p.cluster.k} centroids from {len(x)} training pixels"
        clf = prototype_classifier(mu)
        if how == "linear":
            clf, agreement = fit_linear_classifier(x, assign(x, mu), p.cluster.k, p.cluster.linear_epochs,
                                                   p.cluster.linear_lr, p.loss.balance, p.seed)
            done += f"; a linear classifier fitted on their labels agrees with {100 * agreement:.1f}% of them"
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, clf.numpy().astype(np.float32))
    print(f"{done} -> {out}")


if __name__ == "__main__":
    typer.run(main)
