"""The frozen backbone's features, computed once (the `frozen` stage) and read instead of running the
backbone again, for a method whose rule keeps its backbone frozen (STEGO).

What is cached is the trunk's output, before anything that trains or that a seed initialises: a
convolutional backbone's levels (the FPN that fuses them is the run's, seeded), or a vision
transformer's patch tokens. Of the training split it holds STEGO's five crops of every image, seen at
data.res, in crop order (lib/methods/stego.FiveCrops); of the validation split every image. The cache so
depends on the data, the backbone, its weights, model.levels, the resolution and the crops, and on
nothing a seed, a head or a loss setting changes: every such run re-uses it.

    /train/level{i}   (5N, C_i, h_i, w_i) frozen.dtype
    /val/level{i}     (N_val, C_i, h_i, w_i)

float16 halves the disk and the reading; its rounding (a relative 2^-11) is what the cached features
differ by from recomputed ones, besides the last bits a batch of another size moves (docs/pipeline.md).
"""
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from lib.errors import DataError
from lib.features import to_tensor
from lib.io import atomic_path
from lib.transforms import resize

IN_MEMORY_BYTES = 4 << 30  # a cache up to this size is read into memory whole; a larger one from disk


@torch.no_grad()
def trunk_levels(net, images, res, batch_size, device, desc):
    """Yield (index of the first image, [level (B, C_i, h_i, w_i) float32 on the CPU]) of the frozen trunk."""
    net.eval()
    for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False):
        x = resize(to_tensor(images[np.arange(i, min(i + batch_size, len(images)))], device), res)
        yield i, [t.float().cpu() for t in net.trunk(x)]


def shapes(net, res, in_chans, device):
    """The (C, h, w) of each level the trunk gives an image at res."""
    with torch.no_grad():
        return [tuple(t.shape[1:]) for t in net.eval().trunk(torch.zeros(1, in_chans, res, res, device=device))]


def size_bytes(counts, level_shapes, dtype):
    """Bytes of the cache of `counts` {split: images} at these level shapes."""
    per_image = sum(int(np.prod(s)) for s in level_shapes) * np.dtype(dtype).itemsize
    return per_image * sum(counts.values())


def write(path, net, sources, res, batch_size, device, dtype):
    """The cache at path of sources {split: images (N, H, W, C) or FiveCrops}, after saying its size and
    checking the disk holds it (a one-line DataError when not); atomic."""
    path = Path(path)
    level_shapes = shapes(net, res, sources["train"][np.arange(1)].shape[-1], device)
    need = size_bytes({s: len(v) for s, v in sources.items()}, level_shapes, dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    print(f"frozen features: {', '.join(f'{len(v)} {s}' for s, v in sources.items())} images, "
          f"{len(level_shapes)} level(s) {level_shapes} in {dtype}: {need / 2 ** 30:.2f} GiB -> {path}", flush=True)
    if need > free:
        raise DataError(f"{path}: the frozen features need {need / 2 ** 30:.1f} GiB and {path.parent} has "
                        f"{free / 2 ** 30:.1f} GiB free; free space, or set frozen.cache: false (the backbone "
                        "then runs on every step)")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"res": res, "levels": len(level_shapes), "dtype": dtype})
        for split, images in sources.items():
            out = [f.create_dataset(f"{split}/level{i}", (len(images), *s), dtype=dtype, chunks=(1, *s))
                   for i, s in enumerate(level_shapes)]
            for i, levels in trunk_levels(net, images, res, batch_size, device, f"frozen {split}"):
                for dataset, t in zip(out, levels):
                    dataset[i:i + len(t)] = t.numpy().astype(dtype)
    return need


class Cache:
    """The cached levels of a split, read by image (or crop) ids: in memory when the cache is small enough
    (IN_MEMORY_BYTES), else from the file."""

    def __init__(self, path, split, expected=None):
        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            n = int(f.attrs.get("levels", 0))
            if n == 0 or split not in f:
                raise DataError(f"{path}: no cached {split} features in it; run `dvc repro frozen` "
                                "(with frozen.cache: true)")
            data = [f[f"{split}/level{i}"] for i in range(n)]
            if expected is not None and len(data[0]) != expected:
                raise DataError(f"{path}: {len(data[0])} cached {split} images, the run has {expected}; "
                                "run `dvc repro frozen`")
            nbytes = sum(d.size * d.dtype.itemsize for d in data)
            self.arrays = [d[:] for d in data] if nbytes <= IN_MEMORY_BYTES else None
        self.split, self.n, self.file = split, n, None

    def _open(self):
        if self.file is None:
            f = h5py.File(self.path, "r")
            self.file = [f[f"{self.split}/level{i}"] for i in range(self.n)]
        return self.file

    def levels(self, ids, device):
        """[level (B, C_i, h_i, w_i) float32 on device] of the images `ids` (an array of indices)."""
        ids = np.asarray(ids)
        if self.arrays is not None:
            return [torch.from_numpy(a[ids].astype(np.float32)).to(device) for a in self.arrays]
        # one read per image: h5py's own fancy indexing is ~100x slower for a scattered batch (bench/frozen_cache.py)
        unique, back = np.unique(ids, return_inverse=True)
        return [torch.from_numpy(np.stack([d[i] for i in unique])[back].astype(np.float32)).to(device)
                for d in self._open()]
