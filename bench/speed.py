"""One training epoch under each way of running the same work, side by side in one run (not a test).

    python bench/speed.py                                # the default params
    python bench/speed.py --set model.backbone=resnet18 --set model.weights= --set data.train_size=480 \\
        --set data.res=96 --set data.train_res=96 --set cluster.k=9      # issue 14's work (ResNet-18, 96 px)

Each variant trains a fresh network from the same seed for `--epochs` epochs
(2: the first carries one-time warm-up costs) and the last epoch is timed by
phase, as the train stage times it (lib/loop): the clustering pass (its
forward, k-means), the snapshot labels' forward, the training pass (forward,
loss, backward, step), the rest (reading, augmentations). Variants:

- `NCHW float32`: the networks as they were before they were made channels-last;
- `NHWC float32`: today's default (lib/models.channels_last): the same arithmetic;
- `NHWC bfloat16`: `train.amp_cpu: true` (other numbers: an opt-in).

The ratios are of times measured in this one run, on this machine.
"""
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import torch
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.cli import pick_device, seed_everything  # noqa: E402
from lib.config import apply_settings, load_params  # noqa: E402
from lib.data import Prepared, prepare  # noqa: E402
from lib.methods import get, train_one_epoch  # noqa: E402
from lib.models import channels_last  # noqa: E402

VARIANTS = (("NCHW float32", False, False), ("NHWC float32", True, False), ("NHWC bfloat16", True, True))


def params_with(settings, out):
    """params.yaml with `key=value` settings (values read as YAML, as `dvc exp run -S` reads them)."""
    raw = apply_settings(yaml.safe_load((ROOT / "params.yaml").read_text()), settings)
    Path(out).write_text(yaml.safe_dump(raw))
    return load_params(out)


def main(settings: List[str] = typer.Option([], "--set", help="key=value on top of params.yaml (repeatable)"),
         epochs: int = typer.Option(2, help="epochs per variant; the last is timed")):
    tmp = Path(tempfile.mkdtemp())
    p = params_with(settings, tmp / "params.yaml")
    device = pick_device(p.train.device)
    (tmp / "prepared").mkdir()
    prepare(p, tmp / "prepared")
    prepared = Prepared(tmp / "prepared")
    images = prepared.images("train")
    print(f"method {p.method}, {p.model.backbone} (weights {p.model.weights or 'random'}), {len(images)} images at "
          f"{p.data.train_res} px, views {p.data.res} px, K {p.cluster.k}, batch {p.train.batch_size}, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN bfloat16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}", flush=True)
    rows = []
    for name, nhwc, amp in VARIANTS:
        p.train.amp_cpu = amp
        g = seed_everything(p.seed)
        model = get(p.method).build(p, prepared.channels)  # lib.methods.build, less its channels-last
        model = (channels_last(model) if nhwc else model).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=p.train.lr)
        for epoch in range(epochs):
            t = time.perf_counter()
            stats, times = train_one_epoch(model, images, opt, p, g, device, epoch)
            wall = time.perf_counter() - t
        rest = times["epoch_time_s"] - times["cluster"] - times["label"] - times["train"]
        rows.append((name, wall, times.get("cluster_forward", 0.0), times.get("kmeans", 0.0), times["label"],
                     times["train"], rest, stats["loss"]))
        print(f"{name}: epoch {epochs} {wall:.1f} s, loss {stats['loss']:.4f}", flush=True)
    base = rows[0][1]
    print(f"\n| variant | epoch (s) | clustering forward | k-means | snapshot labels | training pass | rest "
          f"| speed-up | epoch {epochs} loss |\n|---|---|---|---|---|---|---|---|---|")
    for name, wall, cf, km, label, train, rest, loss in rows:
        print(f"| {name} | {wall:.1f} | {cf:.1f} | {km:.1f} | {label:.1f} | {train:.1f} | {rest:.1f} "
              f"| {base / wall:.2f}x | {loss:.4f} |")


if __name__ == "__main__":
    typer.run(main)
