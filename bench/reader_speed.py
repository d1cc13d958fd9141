"""How fast preparation writes, and the training loader reads, a COCO-sized dataset (not a test).

    python bench/reader_speed.py [--images 400] [--train-res 640] [--batch 32]

Builds a folder of synthetic 640 x 480 JPEG photos with label PNGs (COCO's
typical size) in a temporary directory, then measures, in one run:

- preparation throughput (images/s) with 1 worker and with every core;
- the training loader: random batches read from the prepared memory-mapped
  arrays into a float tensor (what `train_one_epoch` does per batch);
- what the authors' loader does instead: decode each JPEG, resize, crop.

The prepared format must make reading a batch negligible next to the
training step; the ratio printed last is loader speed / decode speed.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import typer
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.data import Prepared  # noqa: E402
from lib.data.base import square  # noqa: E402
from lib.data.folder import prepare_folder  # noqa: E402
from lib.cli import n_workers  # noqa: E402
from lib.features import to_tensor  # noqa: E402


def make_folder(root, n, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        # smooth random photo: JPEG decoding cost depends on content, noise would be unrealistic
        small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((640, 480), Image.BICUBIC)
        img.save(root / "images" / f"{i:06d}.jpg", quality=90)
        Image.fromarray((np.asarray(img)[..., 0] // 32).astype(np.uint8)).save(root / "labels" / f"{i:06d}.png")


def main(images: int = 400, train_res: int = 640, batch: int = 32, seconds: float = 10.0):
    torch.set_num_threads(n_workers(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_folder(tmp / "photos", images)
        prep = {}
        for workers in sorted({1, n_workers(0)}):
            out = tmp / f"prepared_{workers}"
            out.mkdir()
            t = time.perf_counter()
            meta = prepare_folder(tmp / "photos", out, train_res, train_res, 0.1, 0, workers)
            prep[workers] = images / (time.perf_counter() - t)
            print(f"prepare ({workers} worker{'s' if workers > 1 else ''}): {prep[workers]:.1f} images/s")
        (out / "meta.json").write_text(json.dumps(meta))
        arr = Prepared(out).images("train")
        g = np.random.default_rng(0)
        rates = {}
        for what, read in (("uint8 batch read", lambda idx: np.array(arr[idx])),
                           ("read + float tensor", lambda idx: to_tensor(arr[idx], "cpu"))):
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                n += len(read(np.sort(g.choice(len(arr), size=min(batch, len(arr)), replace=False))))
            rates[what] = n / (time.perf_counter() - t)
            print(f"training loader, {what} (memory-mapped {train_res} px, batch {batch}): "
                  f"{rates[what]:.0f} images/s")
        loader = rates["read + float tensor"]
        files = sorted((tmp / "photos" / "images").glob("*.jpg"))
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            f = files[n % len(files)]
            im = square(Image.open(f).convert("RGB"), train_res, Image.BILINEAR)
            torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div_(255)
            n += 1
        decode = n / (time.perf_counter() - t)
        print(f"decode + resize per image (the authors' loader, one process): {decode:.0f} images/s")
        print(f"loader / decode: {loader / decode:.1f}x")


if __name__ == "__main__":
    typer.run(main)
