"""Stage `cluster`: the pixel classifier that is scored -> models/classifier.npy.

A (k, d + 1) array [W | b] (lib/clustering), by model.classifier (resolved
from the method where `auto`): k-means (cluster.k, cluster.backend) on the
dumped training pixels, then the nearest-centroid classifier (prototype) or
a linear classifier fitted on the k-means labels (linear: PiCIE Table 1's
"No Train / Linear" and Modified DeepCluster); or, for a network that
outputs its own assignments (the dump holds them), the identity (argmax), so
that `evaluate` stays one code path.
"""
import h5py
import numpy as np
import torch
import typer

from lib.cli import setup, user_errors
from lib.clustering import argmax_classifier, assign, fit_linear_classifier, kmeans, prototype_classifier
from lib.io import atomic_path

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(features: str = REQUIRED, out: str = REQUIRED, params: str = "params.yaml"):
    p = setup(params).p
    with h5py.File(features, "r") as f:
        x = torch.from_numpy(f["train/features"][:].astype(np.float32))
    how = p.model.classifier
    if how == "argmax":
        clf = argmax_classifier(x.shape[1])
        done = f"identity on {x.shape[1]} assignments (the network's own argmax is scored)"
    else:
        mu = kmeans(x, p.cluster.k, p.cluster.niter, p.seed, p.cluster.backend, p.cluster.restarts)
        done = (f"k-means ({p.cluster.backend}, best of {p.cluster.restarts}): {p.cluster.k} centroids from "
                f"{len(x)} training pixels")
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
