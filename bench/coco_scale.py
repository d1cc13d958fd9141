"""The COCO-Stuff-27 run, measured on this machine and projected (not a test).

    python bench/coco_scale.py                       # sizes 64 and 256 images: minutes on 2 CPU cores
    python bench/coco_scale.py --sizes 256 --sizes 768 --cluster-images 128 --live-memory   # memory bounded?
    python bench/coco_scale.py --sizes 128 --sizes 384 --cluster-images 64 --compare-allocator  # runtime.allocator
    python bench/coco_scale.py --sizes 2000 --sizes 8000 --batch 128    # on a GPU

Builds a synthetic prepared dataset with COCO-Stuff-27's protocol geometry
(640 px training images, views at 320 px, K = 27; `data.name: cocostuff27`'s
resolved params, so batch, clustering sample and k-means are the protocol's
unless an option says otherwise) at each size, in the prepared format the
train stage reads (memory-mapped arrays), and runs, in a fresh process per
size:

- one training epoch of the method (PiCIE by default) over every image:
  the clustering pass's forward (`cluster.images` images, bounded), k-means
  on the bounded sample (`cluster.max_points` per view, 2 views), the snapshot
  labelling forward and the training pass (forward, loss, backward, step);
- the dump's forward over every training image and the evaluation's over
  the validation images (a quarter of the size);
- retrain's supervised step (one view, random labels) on a few batches.

It prints each phase per 1000 images (k-means per epoch: it is bounded), the
peak host memory of each part (anonymous: what the process holds, not the page cache of
the memory-mapped images), the memory still held after each part once glibc has
returned its free pages (`malloc_trim`: a leak shows there) and on CUDA the peak
GPU memory, at both sizes, and projects one COCO-27 epoch (49,629 training images) and a 10-epoch run:

    epoch = cluster_forward/img x min(cluster.images, N) + kmeans + (label + train + rest)/img x N
    run   = epochs x epoch + dump/img x N + eval/img x 2,175
    retrain = retrain.epochs x retrain_step/img x N   (timed on a few batches)

Peak memory must not grow with the number of images beyond the bounded
k-means sample: compare the two sizes, and the epoch's peak in each tenth of
its time (a peak reached early and held, or one still climbing). Each size
runs under params.yaml's `runtime.allocator` (`reuse` by default: freed blocks
kept for the next step, so the resident peak is the heap's high-water mark,
fragments included); `--compare-allocator` runs it again under the other
one, in its own process, and prints both. Under `system` (glibc's default)
freed blocks below its dynamic mmap threshold (up to 32 MiB) are kept for
reuse, so the resident peak is the live tensors plus a cache of freed blocks
whose size varies from run to run by hundreds of MiB at this geometry.
`--live-memory` runs each size a third time, under `system` with
`MALLOC_MMAP_THRESHOLD_` at 1 MiB, so that every block of 1 MiB or more goes
back to the system when freed and the resident peak is the live one; that
run is slower (a page fault per large block), so its times are not used.
"""
import contextlib
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.cli import pick_device, seed_everything, set_allocator  # noqa: E402
from lib.config import load_params  # noqa: E402
from lib.data.textures import make_split  # noqa: E402
from lib.features import gather_pixel_features, iter_features, sample_pixel_index, to_tensor  # noqa: E402
from lib.methods import build, train_one_epoch  # noqa: E402
from lib.models.fpn import STRIDE  # noqa: E402
from lib.readout import Supervised, fit  # noqa: E402
from lib.transforms import resize  # noqa: E402

COCO_TRAIN, COCO_VAL = 49_629, 2_175  # PiCIE's curated COCO-Stuff-27 sets (docs/datasets.md)
RETRAIN_BATCHES = 8  # retrain is timed on this many batches (its cost per image does not depend on the size)
OTHER = {"reuse": "system", "system": "reuse"}
COMPARED = ("label", "train", "epoch_time_s", "peak_anon_mib")  # --compare-allocator's cells
LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 20)}  # --live-memory: blocks of 1 MiB or more unmapped when freed


def anon_kib():
    """This process's anonymous resident memory (KiB): what it holds itself, not mapped files."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def held_kib():
    """Anonymous resident memory (KiB) once the free pages of glibc's heaps are returned (malloc_trim):
    what the process still holds, without the allocator's cache of freed blocks."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the resident size as it is
        pass
    return anon_kib()


class PeakMemory:
    """The largest anonymous resident size seen while the block runs (sampled every 20 ms), and the
    samples, to tell a peak reached early and held from one that keeps growing."""

    def __enter__(self):
        self.peak, self.running, self.samples = anon_kib(), True, []
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.samples.append(anon_kib())
            self.peak = max(self.peak, self.samples[-1])
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def build_dataset(root, n, side, seed=0):
    """n synthetic training images (and n/4 validation ones at the view size) as the prepare stage
    writes them; 32 distinct textured images repeated, written in chunks (content does not change costs)."""
    root.mkdir(parents=True)
    tiles, _ = make_split(32, side, seed)
    train = np.lib.format.open_memmap(root / "train_images.npy", "w+", np.uint8, (n, side, side, 3))
    for i in range(0, n, 32):
        train[i:i + 32] = tiles[:min(32, n - i)]
    train.flush()
    val = make_split(max(4, n // 4), side // 2, seed + 1)[0]
    np.save(root / "val_images.npy", val)
    (root / "meta.json").write_text(json.dumps({"name": "synthetic", "classes": [], "things": [], "stuff": [],
                                                "labelled": False, "channels": 3}))


def measure(root, params_path, allocator):
    """One size, in this process, under `allocator` (runtime.allocator): the phases' seconds, and each
    phase's peak memory."""
    p = load_params(params_path)
    set_allocator(allocator)  # as the stages do with runtime.allocator
    device = pick_device(p.runtime.device)
    g = seed_everything(p.seed)
    images = np.load(root / "train_images.npy", mmap_mode="r")
    val = np.load(root / "val_images.npy", mmap_mode="r")
    model = build(p).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=p.train.lr)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    peaks, held = {}, {"start": held_kib()}

    @contextlib.contextmanager
    def phase(name):
        """The block's peak memory, and what is held once it is done."""
        with PeakMemory() as mem:
            yield mem
        peaks[name], held[name] = mem.peak, held_kib()

    with phase("epoch") as mem:
        _, times = train_one_epoch(model, images, opt, p, g, device, 0)
    tenths = [int(max(part)) // 1024 for part in np.array_split(np.array(mem.samples), 10) if len(part)]
    with phase("dump"):
        fres = p.data.res // STRIDE
        index = sample_pixel_index(len(images), fres, fres, p.dump.train_points, p.seed)
        out = np.zeros((len(index), model.out_channels), np.float16)
        t = time.perf_counter()
        gather_pixel_features(model, images, index, p.train.batch_size, device, p.data.res, out=out, desc="dump")
        times["dump"] = time.perf_counter() - t
    with phase("eval"):
        t = time.perf_counter()
        for _, z in iter_features(model, val, p.train.batch_size, device, "eval"):
            z.argmax(1)  # the scored assignment's cost is the forward's; the histogram is negligible
        times["eval"] = time.perf_counter() - t
    with phase("retrain"):
        # retrain's step (one view, labels, cross-entropy: lib/readout) on a bounded number of batches:
        # its cost per image is what the projection needs, and it streams the images as the train pass does
        n = min(len(images), RETRAIN_BATCHES * p.train.batch_size)
        labels = np.random.default_rng(0).integers(0, 27, (n, images.shape[1], images.shape[2]), dtype=np.uint8)
        supervised = Supervised(model, 27).to(device).train()
        t = time.perf_counter()
        fit(supervised, supervised.parameters(), lambda idx: resize(to_tensor(images[idx], device), p.data.res),
            labels, 1, p.retrain.lr, p.train.batch_size, g, device, p.data.res, flip=True, desc="retrain")
        times["retrain"] = time.perf_counter() - t
        times["n_retrain"] = n // p.train.batch_size * p.train.batch_size
    times.update(n=len(images), n_val=len(val), clustered=min(len(images), p.cluster.images) or len(images),
                 peak_anon_mib=max(peaks.values()) / 1024, **{f"peak_{k}_mib": v / 1024 for k, v in peaks.items()},
                 **{f"held_{k}_mib": v / 1024 for k, v in held.items()}, epoch_tenths_mib=tenths,
                 peak_gpu_mib=torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else 0.0)
    return times


def params_file(folder, method, batch, cluster_images, epochs):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["method"] = method
    raw["data"].update(name="cocostuff27", root=str(folder))  # the protocol's params; the data are synthetic
    raw["curves"]["every"] = 0
    raw["train"]["epochs"] = epochs
    if batch:
        raw["train"]["batch_size"] = batch
    if cluster_images is not None:
        raw["cluster"]["images"] = cluster_images
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main(sizes: list[int] = typer.Option([64, 256], "--sizes", help="training images of each measured dataset"),
         method: str = "picie", batch: int = typer.Option(16, help="train.batch_size (0: the protocol's, 128)"),
         cluster_images: int = typer.Option(None, help="cluster.images (default: the protocol's, 5120)"),
         epochs: int = typer.Option(10, help="train.epochs of the projected run"),
         live_memory: bool = typer.Option(False, help="also run each size with MALLOC_MMAP_THRESHOLD_ at 1 MiB "
                                          "and report its peaks: the live memory (its times are not used)"),
         compare_allocator: bool = typer.Option(False, help="also run each size under the other runtime.allocator "
                                                "and print its times and peak beside"),
         child: str = typer.Option("", hidden=True)):
    if child:  # one size, in its own process, so that each peak is its own
        folder, params_path, allocator = child.split(",")
        print(json.dumps(measure(Path(folder), params_path, allocator)))
        return
    with tempfile.TemporaryDirectory() as folder:
        # the projection clusters the protocol's number of images, whatever --cluster-images measured with
        protocol_images = load_params(params_file(folder, method, batch, None, epochs)).cluster.images
        params_path = params_file(folder, method, batch, cluster_images, epochs)
        p = load_params(params_path)
        print(f"{method}, {p.model.backbone}, views {p.data.res} px of {p.data.train_res} px images, K {p.cluster.k}, "
              f"batch {p.train.batch_size}, cluster.images {p.cluster.images}, cluster.max_points "
              f"{p.cluster.max_points}, device {pick_device(p.runtime.device)}, torch threads {torch.get_num_threads()}",
              flush=True)
        rows = []
        for n in sizes:
            root = Path(folder) / f"data{n}"
            build_dataset(root, n, p.data.train_res)
            rows.append(run_child(n, root, params_path, p.runtime.allocator))
            if compare_allocator:
                other = run_child(n, root, params_path, OTHER[p.runtime.allocator])
                rows[-1].update({f"other_{k}": other[k] for k in COMPARED})
            if live_memory:  # glibc's own mmap, which "reuse" switches off, returns each large freed block
                live = run_child(n, root, params_path, "system", LIVE_ENV)
                rows[-1].update({f"live_{k}": v for k, v in live.items() if k.startswith("peak_")})
            print(f"measured {n} images", flush=True)
    report(rows, p, protocol_images)


def run_child(n, root, params_path, allocator, env=None):
    """One size measured in a fresh process (so that each peak is its own), with `env` added."""
    r = subprocess.run([sys.executable, __file__, "--child", f"{root},{params_path},{allocator}"], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode:
        sys.exit(f"size {n} failed{' with ' + str(env) if env else ''}:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def by_phase(row, prefix):
    """The row's `prefix` memory of each phase, in MiB, as one table cell."""
    return "/".join(f"{row[f'{prefix}_{k}_mib']:.1f}" for k in ("epoch", "dump", "eval", "retrain"))


def report(rows, p, protocol_images):
    per = lambda r, key, n: 1000 * r[key] / n  # noqa: E731
    print("\n| phase | " + " | ".join(f"{r['n']} images" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    lines = [("clustering forward, s / 1000 clustered images", lambda r: per(r, "cluster_forward", r["clustered"])),
             ("k-means (bounded sample, 2 views), s / epoch", lambda r: r["kmeans"]),
             ("labelling (snapshot forward), s / 1000 images", lambda r: per(r, "label", r["n"])),
             ("training pass, s / 1000 images", lambda r: per(r, "train", r["n"])),
             ("augmentation + reading, s / 1000 images", lambda r: per(r, "augment", r["n"]) + per(r, "data", r["n"])),
             ("dump forward, s / 1000 training images", lambda r: per(r, "dump", r["n"])),
             ("evaluation forward, s / 1000 validation images", lambda r: per(r, "eval", r["n_val"])),
             ("retrain step (one view, labels), s / 1000 images", lambda r: per(r, "retrain", r["n_retrain"])),
             ("peak host memory (anonymous), MiB", lambda r: r["peak_anon_mib"]),
             ("  of which: PiCIE epoch", lambda r: r["peak_epoch_mib"]),
             ("  the epoch's peak in each tenth of its time", lambda r: "/".join(map(str, r["epoch_tenths_mib"]))),
             ("  dump", lambda r: r["peak_dump_mib"]),
             ("  evaluation", lambda r: r["peak_eval_mib"]),
             ("  retrain step", lambda r: r["peak_retrain_mib"]),
             ("held once freed pages are returned (malloc_trim), MiB: before the epoch",
              lambda r: r["held_start_mib"]),
             ("  after the epoch / dump / evaluation / retrain step",
              lambda r: by_phase(r, "held"))]
    if "live_peak_anon_mib" in rows[0]:
        lines += [(f"peak live memory (MALLOC_MMAP_THRESHOLD_={LIVE_ENV['MALLOC_MMAP_THRESHOLD_']}), MiB",
                   lambda r: r["live_peak_anon_mib"]),
                  ("  epoch / dump / evaluation / retrain step",
                   lambda r: by_phase(r, "live_peak"))]
    if "other_train" in rows[0]:
        other = OTHER[p.runtime.allocator]
        lines += [(f"runtime.allocator {p.runtime.allocator} / {other}: whole epoch, s / 1000 images",
                   lambda r: f"{per(r, 'epoch_time_s', r['n']):.1f} / {per(r, 'other_epoch_time_s', r['n']):.1f}"),
                  ("  training pass", lambda r: f"{per(r, 'train', r['n']):.1f} / {per(r, 'other_train', r['n']):.1f}"),
                  ("  labelling", lambda r: f"{per(r, 'label', r['n']):.1f} / {per(r, 'other_label', r['n']):.1f}"),
                  ("  peak host memory, MiB", lambda r: f"{r['peak_anon_mib']:.0f} / {r['other_peak_anon_mib']:.0f}")]
    lines.append(("peak GPU memory, MiB", lambda r: r["peak_gpu_mib"]))
    for name, fn in lines:
        print(f"| {name} | " + " | ".join(v if isinstance(v := fn(r), str) else f"{v:.1f}" for r in rows) + " |")
    r = rows[-1]  # the largest size: its per-image costs are the least touched by warm-up
    clustered = min(COCO_TRAIN, protocol_images) if protocol_images else COCO_TRAIN
    per_image = (r["label"] + r["train"] + r["augment"] + r["data"]) / r["n"]
    epoch = r["cluster_forward"] / r["clustered"] * clustered + r["kmeans"] + per_image * COCO_TRAIN
    run = p.train.epochs * epoch + r["dump"] / r["n"] * COCO_TRAIN + r["eval"] / r["n_val"] * COCO_VAL
    print(f"\nprojected COCO-27 epoch ({COCO_TRAIN} images, {clustered} clustered as the protocol's "
          f"cluster.images): {epoch / 3600:.1f} h; "
          f"{p.train.epochs}-epoch run with dump and evaluation: {run / 3600:.1f} h")
    retrain = p.retrain.epochs * r["retrain"] / r["n_retrain"] * COCO_TRAIN
    print(f"projected retrain stage ({p.retrain.epochs} supervised epochs): {retrain / 3600:.1f} h, "
          f"{100 * retrain / (run + retrain):.0f} % of the run with it")
    first, last = rows[0], rows[-1]
    growth = ", ".join(f"{name} {last[key] - first[key]:+.1f} MiB" for name, key in
                       [("peak", "peak_anon_mib"), ("held after the epoch", "held_epoch_mib"),
                        ("live peak", "live_peak_anon_mib")] if key in first)
    print(f"host memory from {first['n']} to {last['n']} images: {growth}")


if __name__ == "__main__":
    typer.run(main)
