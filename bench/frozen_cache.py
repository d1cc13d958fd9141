"""STEGO's epoch on the frozen stage's cache against recomputing the frozen trunk every step, side by side
in one run, with the cache's build time, size and read rate (not a test: it prints what it measures).

    python bench/frozen_cache.py                      # after `dvc repro prepare`: the embedded data
    python bench/frozen_cache.py --images 64 --backbones efficientnet_lite0

For each backbone (the default EfficientNet-Lite0 with its ImageNet weights, and a DINO ViT-S/8, random
init: a forward's time does not depend on the weights), on the first `--images` training images of the
prepared data (their five crops) at the run's data.res, batch train.batch_size:

- `build`: the frozen stage's work for them (lib/frozen.write, float16), its seconds and size;
- `read`: random batches of crop ids (a batch and its partners, as an epoch reads them) from the cache file
  (not memory: a cache larger than lib/frozen.IN_MEMORY_BYTES is read so), crops per second;
- `recomputed`, `cached (file)` and `cached (memory)`: one STEGO epoch each from the same seed
  (train_one_epoch, frozen=None or the cache, read from the file or held in memory), its seconds, and the
  share of it inside the training step (`train`: the head, its loss, backward; for `recomputed` the
  trunk's forward too). epoch / train of a cached epoch: how close it is to the head's own compute.

A study's STEGO rows of five seeds and six configurations on one backbone build the cache once: their
trunk time is `build` once instead of `recomputed - cached` per epoch of each of the thirty runs.
"""
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np
import torch
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib import frozen, methods  # noqa: E402
from lib.config import load_params, set_key  # noqa: E402
from lib.data import Prepared  # noqa: E402
from lib.methods.stego import FiveCrops, neighbours, train_one_epoch  # noqa: E402
from lib.pipeline import cmd_option  # noqa: E402

WEIGHTS = {"efficientnet_lite0": "imagenet"}  # the others: random init


def params(folder, backbone):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in {"method": "stego", "model.backbone": backbone, "model.weights": WEIGHTS.get(backbone, ""),
                       "frozen.cache": True}.items():
        set_key(raw, key, value)
    path = Path(folder) / f"{backbone}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


def epoch(p, images, labels, knn, cache):
    torch.manual_seed(0)
    net = methods.build(p)
    optimizer = torch.optim.Adam(methods.param_groups(net, p), lr=p.train.lr)
    _, times = train_one_epoch(net, images, optimizer, p, torch.Generator().manual_seed(1), torch.device("cpu"), 0,
                               labels, knn, frozen=cache)
    return times["epoch_time_s"], times["train"]


def main(images: int = typer.Option(32, help="training images (five crops each)"),
         backbones: List[str] = typer.Option(["efficientnet_lite0", "dino_vits8"], "--backbones"),
         reads: int = typer.Option(20, help="random batches read from the cache file")):
    prepared = Prepared(cmd_option("frozen", "data"))
    train = prepared.images("train")[:images]
    labels = prepared.labels("train")
    labels = None if labels is None else labels[:images]
    print(f"{len(train)} training images ({5 * len(train)} crops), CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in backbones:
            p = params(tmp, backbone)
            crops = FiveCrops(train, p.stego.crop_ratio)
            torch.manual_seed(0)
            net = methods.build(p).net
            path = Path(tmp) / f"{backbone}.h5"
            t = time.perf_counter()
            size = frozen.write(path, net, {"train": crops}, p.data.res, p.runtime.inference_batch, "cpu",
                                p.frozen.dtype)
            build = time.perf_counter() - t
            saved = frozen.IN_MEMORY_BYTES
            frozen.IN_MEMORY_BYTES = 0  # the file, not memory: the slower of the two ways an epoch reads it
            try:
                on_file = frozen.Cache(path, "train", expected=len(crops))
            finally:
                frozen.IN_MEMORY_BYTES = saved
            in_memory = frozen.Cache(path, "train", expected=len(crops))
            g = np.random.default_rng(0)
            t = time.perf_counter()
            for _ in range(reads):
                on_file.levels(g.integers(0, len(crops), 2 * p.train.batch_size), "cpu")
            read = reads * 2 * p.train.batch_size / (time.perf_counter() - t)
            knn = neighbours(methods.build(p), train, p, torch.device("cpu"), in_memory)
            timed = [epoch(p, train, labels, knn, cache) for cache in (None, on_file, in_memory)]
            rows.append((backbone, p.data.res, build, size, read, timed))
    print(f"{'backbone':>20} {'px':>4} {'build s':>8} {'MiB':>7} {'read crops/s':>13} | epoch s (train s): "
          f"recomputed, cached (file), cached (memory) | speed-up, file and memory | epoch / train, file and memory")
    for b, res, build, size, read, ((rec, rec_t), (fil, fil_t), (mem, mem_t)) in rows:
        print(f"{b:>20} {res:>4} {build:>8.2f} {size / 2 ** 20:>7.1f} {read:>13.0f} | {rec:.2f} ({rec_t:.2f}), "
              f"{fil:.2f} ({fil_t:.2f}), {mem:.2f} ({mem_t:.2f}) | {rec / fil:.1f}x, {rec / mem:.1f}x | "
              f"{fil / fil_t:.2f}, {mem / mem_t:.2f}")


if __name__ == "__main__":
    typer.run(main)
