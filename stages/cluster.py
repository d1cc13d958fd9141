"""Stage `cluster`: k-means (cluster.k) on the dumped training pixels -> centroids."""
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
    mu = kmeans(x, p.cluster.k, p.cluster.niter, p.seed).numpy()
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, mu)
    print(f"k-means: {p.cluster.k} centroids from {len(x)} training pixels -> {out}")


if __name__ == "__main__":
    typer.run(main)
