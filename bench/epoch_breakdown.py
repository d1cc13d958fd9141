"""Where one epoch of the run's method (PiCIE by default) spends its time, on the current params.yaml (not a test).

    python bench/epoch_breakdown.py [--epochs 2] [--params params.yaml]

The first epoch carries one-time costs (thread pools, allocator warm-up);
the second shows the steady state.

Also the cost of the learning curves' pass after each epoch (lib/curves), as a
share of the epoch. Prints the seconds spent inside the training passes (forward + loss +
backward + optimiser step) and outside them (the clustering pass's forward,
k-means, reading batches, augmentations), the ratio outside / inside, and the
k-means memory bound. The authors' code spends ~60 of every 80 minutes of a
COCO epoch outside the training passes (ratio ~3); the target here is <= 0.3.
"""
import sys
import tempfile
import time
from pathlib import Path

import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.cli import pick_device, seed_everything, set_allocator  # noqa: E402
from lib.config import load_params  # noqa: E402
from lib.data import Prepared, prepare  # noqa: E402
from lib.curves import epoch_scores  # noqa: E402
from lib.methods import build, train_one_epoch  # noqa: E402


def main(params: str = "params.yaml", data: str = "data/prepared", epochs: int = 2):
    p = load_params(params)
    set_allocator(p.runtime.allocator)  # as the train stage does
    device = pick_device(p.runtime.device)
    if not (Path(data) / "meta.json").is_file():
        data = tempfile.mkdtemp()
        print(f"no {data}: preparing {p.data.name} into {data}")
        prepare(p, data)
    prepared = Prepared(data)
    images, labels = prepared.images("train"), prepared.labels("val")
    g = seed_everything(p.seed)
    model = build(p, prepared.channels).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=p.train.lr)
    print(f"method {p.method}, {len(images)} images at {p.data.res} px, batch {p.train.batch_size}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    for epoch in range(epochs):
        t = time.perf_counter()
        _, times = train_one_epoch(model, images, opt, p, g, device, epoch)
        outside = times["epoch_time_s"] - times["train"]
        print(f"\nepoch {epoch + 1}: {time.perf_counter() - t:.1f} s")
        print(f"  inside the training passes (fwd+bwd+step): {times['train']:8.2f} s")
        print(f"  outside: clustering forward               {times.get('cluster_forward', 0.0):8.2f} s")
        print(f"           k-means ({'+'.join(str(k) for k in [p.cluster.k, p.cluster.k_over] if k)} clusters, 2 views)"
              f"{'':>4}{times.get('kmeans', 0.0):8.2f} s")
        print(f"           reading batches                  {times['data']:8.2f} s")
        print(f"           augmentations (P1, P2, G)        {times['augment']:8.2f} s")
        print(f"           pseudo-labels (snapshot forward) {times['label']:8.2f} s")
        other = outside - times["cluster"] - times["data"] - times["augment"] - times["label"]
        print(f"           other                            {other:8.2f} s")
        print(f"  outside / inside ratio: {times['outside_ratio']:.3f}  (target <= 0.30)")
        if labels is not None and prepared.classes:  # the learning curves' pass after the epoch (curves.*)
            t = time.perf_counter()
            scores = epoch_scores(model, images, prepared.images("val"), labels, prepared, p, device)
            spent = time.perf_counter() - t
            print(f"  learning curves after the epoch: {spent:.2f} s = {100 * spent / times['epoch_time_s']:.1f} % "
                  f"of the epoch (target <= 15 %); validation acc {scores['acc']:.2f} mIoU {scores['miou']:.2f}")
    mem = 2 * p.cluster.max_points * p.model.dim * 4 / 2**20
    print(f"k-means input bounded by cluster.max_points: 2 views x {p.cluster.max_points} x {p.model.dim} "
          f"float32 = {mem:.0f} MiB, whatever the dataset size")


if __name__ == "__main__":
    typer.run(main)
