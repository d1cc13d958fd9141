"""Stage `cluster`: k-means (cluster.k) on the dumped training pixels -> centroids.

For methods scored by their own argmax (IIC, InfoSeg: the dump holds their
assignments) the centroids are the one-hot vectors, so that the nearest
centroid of a pixel is its argmax and `evaluate` stays one code path.
"""
import h5py
import numpy as np
import torch
import typer

from lib.cli import user_errors
from lib.clustering import kmeans
from lib.config import load_params
from lib.io import atomic_path


@user_errors
def main(features: str = "features/features.h5", out: str = "models/centroids.npy", params: str = "params.yaml"):
    p = load_params(params)
    with h5py.File(features, "r") as f:
        x = torch.from_numpy(f["train/features"][:].astype(np.float32))
        scoring = f.attrs.get("scoring", "kmeans")
    if scoring == "argmax":
        # IIC, InfoSeg: their own assignments are scored; the nearest one-hot vector is the argmax
        mu = np.eye(x.shape[1], dtype=np.float32)
        done = f"{len(mu)} one-hot centroids (the network's own argmax is scored)"
    else:
        mu = kmeans(x, p.cluster.k, p.cluster.niter, p.seed).numpy()
        done = f"k-means: {p.cluster.k} centroids from {len(x)} training pixels"
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, mu)
    print(f"{done} -> {out}")


if __name__ == "__main__":
    typer.run(main)
