"""How noisy is one evaluation? The spread of acc / mIoU of one trained network from the scoring alone.

    python bench/eval_noise.py [--features features/features.h5] [--data data/prepared] [--seeds 10]

Two sources, measured on the run's dumped features (the `dump` stage's output):
- k-means: the final clustering (stage `cluster`) with different seeds, one run each, and the best
  of `--restarts` runs by inertia (what `cluster.restarts` does);
- the validation sample: a bootstrap over the validation images (resampled with replacement,
  the pooled histogram re-matched), for one k-means seed; its standard error shrinks as
  1 / sqrt(images), so the line printed last gives the images needed for a target error.
A study's effects should be well above these (issue: "the evaluation's own noise well below the
effects"). Prints its numbers; not a test.
"""
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.clustering import inertia, kmeans, predict_clusters, prototype_classifier  # noqa: E402
from lib.config import load_params  # noqa: E402
from lib.data import Prepared  # noqa: E402
from lib.metrics import evaluate_histogram, histogram  # noqa: E402


def per_image_histograms(vf, clf, labels, res, n_classes, k):
    out = np.zeros((len(vf), n_classes, k), dtype=np.int64)
    for i in range(0, len(vf), 64):
        z = torch.from_numpy(vf[i:i + 64].astype(np.float32))
        pred = predict_clusters(z, clf, res).numpy()
        for j in range(len(z)):
            out[i + j] = histogram(labels[i + j], pred[j], n_classes, k)
    return out


def main(features: str = "features/features.h5", data: str = "data/prepared", params: str = "params.yaml",
         seeds: int = 10, restarts: int = 5, bootstrap: int = 500):
    p = load_params(params)
    prepared = Prepared(data)
    labels, classes = prepared.labels("val"), prepared.classes
    res, k, n = prepared.meta["res"], p.cluster.k, len(classes)
    with h5py.File(features, "r") as f:
        x = torch.from_numpy(f["train/features"][:].astype(np.float32))
        vf = f["val/features"][:]
    scores = {"one run": [], f"best of {restarts}": []}
    hists = None
    for s in range(seeds):
        runs = [kmeans(x, k, p.cluster.niter, 1000 * s + r, p.cluster.backend) for r in range(restarts)]  # seeds as
        # kmeans(restarts=...) draws them, so "best of" is what cluster.restarts gives
        best = min(runs, key=lambda mu: inertia(x, mu))
        for name, mu in (("one run", runs[0]), (f"best of {restarts}", best)):
            h = per_image_histograms(vf, prototype_classifier(mu), labels, res, n, k)
            m, _, _ = evaluate_histogram(h.sum(0), classes, prepared.things, prepared.stuff)
            scores[name].append((m["acc"], m["miou"]))
            hists = h if hists is None else hists
    print(f"{len(vf)} validation images, {len(x)} clustered training pixels, k = {k}")
    for name, got in scores.items():
        a = np.array(got)
        print(f"k-means {name:>10}, {seeds} seeds: acc {a[:, 0].mean():.2f} ± {a[:, 0].std(ddof=1):.2f}  "
              f"mIoU {a[:, 1].mean():.2f} ± {a[:, 1].std(ddof=1):.2f} (mean ± sd)")
    g = np.random.default_rng(0)
    boot = []
    for _ in range(bootstrap):
        m, _, _ = evaluate_histogram(hists[g.integers(0, len(hists), len(hists))].sum(0), classes)
        boot.append((m["acc"], m["miou"]))
    b = np.array(boot)
    se_acc, se_miou = b[:, 0].std(ddof=1), b[:, 1].std(ddof=1)
    print(f"validation sample, bootstrap of {len(vf)} images: standard error acc {se_acc:.2f}, mIoU {se_miou:.2f}")
    for images in (160, 480, 960):
        f = np.sqrt(len(vf) / images)
        print(f"  at {images} validation images: about acc {se_acc * f:.2f}, mIoU {se_miou * f:.2f}")


if __name__ == "__main__":
    typer.run(main)
