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
- `NHWC float32`: channels-last (lib/models.channels_last): the same arithmetic;
- `NHWC float32, reuse`: and freed memory kept for the next step (`runtime.allocator:
  reuse`, lib/cli.set_allocator): the same arithmetic; today's default;
- `NHWC bfloat16, reuse`: and `train.amp_cpu: true` (other numbers: an opt-in).

The first two run under glibc's default allocator (`runtime.allocator: system`), so
they run first: "reuse", once set, holds for the rest of the process.

The ratios are of times measured in this one run, on this machine.

How far from the hardware's limit: the first variant's first (untimed) epoch
runs under torch's FLOP counter (every convolution and matrix product of the
network's forward and backward passes; faiss's k-means is not seen, well
under 1 % of them), and a 2048 x 2048 matrix product measures what this
machine does per second in float32 and in bfloat16. The epoch's FLOPs at
that rate are the fastest any code doing the same computation could run it
here; the script prints it, each variant's share of that rate, and the
largest speed-up over the first variant it leaves.
"""
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import torch
import typer
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.cli import pick_device, seed_everything, set_allocator  # noqa: E402
from lib.config import apply_settings, load_params  # noqa: E402
from lib.data import Prepared, prepare  # noqa: E402
from lib.methods import get, train_one_epoch  # noqa: E402
from lib.models import channels_last  # noqa: E402

VARIANTS = (("NCHW float32", False, False, "system"), ("NHWC float32", True, False, "system"),
            ("NHWC float32, reuse", True, False, "reuse"), ("NHWC bfloat16, reuse", True, True, "reuse"))


def params_with(settings, out):
    """params.yaml with `key=value` settings (values read as YAML, as `dvc exp run -S` reads them)."""
    raw = apply_settings(yaml.safe_load((ROOT / "params.yaml").read_text()), settings)
    Path(out).write_text(yaml.safe_dump(raw))
    return load_params(out)


def matmul_rate(dtype, n=2048, repeats=10):
    """FLOP/s of an n x n matrix product in dtype on the CPU, the best of `repeats`: the practical peak
    that convolutions (oneDNN's are matrix products in blocks) can approach and not pass."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def main(settings: List[str] = typer.Option([], "--set", help="key=value on top of params.yaml (repeatable)"),
         epochs: int = typer.Option(2, help="epochs per variant; the last is timed")):
    tmp = Path(tempfile.mkdtemp())
    p = params_with(settings, tmp / "params.yaml")
    device = pick_device(p.runtime.device)
    (tmp / "prepared").mkdir()
    prepare(p, tmp / "prepared")
    prepared = Prepared(tmp / "prepared")
    images = prepared.images("train")
    print(f"method {p.method}, {p.model.backbone} (weights {p.model.weights or 'random'}), {len(images)} images at "
          f"{p.data.train_res} px, views {p.data.res} px, K {p.cluster.k}, batch {p.train.batch_size}, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN bfloat16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}", flush=True)
    rows = []
    for name, nhwc, amp, allocator in VARIANTS:
        p.train.amp_cpu = amp
        set_allocator(allocator)
        g = seed_everything(p.seed)
        model = get(p.method).build(p, prepared.channels)  # lib.methods.build, less its channels-last
        model = (channels_last(model) if nhwc else model).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=p.train.lr)
        for epoch in range(epochs):
            counter = FlopCounterMode(display=False) if not rows and epoch == 0 else None
            t = time.perf_counter()
            # the first epoch is warm-up, untimed: count its work there (every epoch does the same)
            with counter or contextlib.nullcontext():
                stats, times = train_one_epoch(model, images, opt, p, g, device, epoch)
            wall = time.perf_counter() - t
            if counter:
                flops = counter.get_total_flops()
        rest = times["epoch_time_s"] - times["cluster"] - times["label"] - times["train"]
        rows.append((name, wall, times.get("cluster_forward", 0.0), times.get("kmeans", 0.0), times["label"],
                     times["train"], rest, stats["loss"]))
        print(f"{name}: epoch {epochs} {wall:.1f} s, loss {stats['loss']:.4f}", flush=True)
    base = rows[0][1]
    rates = {"float32": matmul_rate(torch.float32), "bfloat16": matmul_rate(torch.bfloat16)}
    fastest = flops / max(rates.values())
    print(f"\nwork of one epoch: {flops / 1e9:.0f} GFLOP (network forward and backward passes; k-means not "
          f"counted)\nthis machine's {' / '.join(rates)} matrix-product rate: "
          f"{' / '.join(f'{r / 1e9:.0f}' for r in rates.values())} GFLOP/s")
    for (name, _, amp, _), (_, wall, *_) in zip(VARIANTS, rows):
        rate = rates["bfloat16" if amp else "float32"]
        print(f"{name}: {flops / wall / 1e9:.0f} GFLOP/s, {100 * flops / wall / rate:.0f} % of its type's rate")
    print(f"fastest epoch at the better rate: {fastest:.1f} s, {base / fastest:.2f}x the first variant's: the "
          f"largest speed-up this machine allows the same computation")
    print(f"\n| variant | epoch (s) | clustering forward | k-means | snapshot labels | training pass | rest "
          f"| speed-up | epoch {epochs} loss |\n|---|---|---|---|---|---|---|---|---|")
    for name, wall, cf, km, label, train, rest, loss in rows:
        print(f"| {name} | {wall:.1f} | {cf:.1f} | {km:.1f} | {label:.1f} | {train:.1f} | {rest:.1f} "
              f"| {base / wall:.2f}x | {loss:.4f} |")


if __name__ == "__main__":
    typer.run(main)
