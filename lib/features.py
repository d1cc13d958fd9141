"""Pixel features of a trained network, in batches, for the dump/cluster/evaluate stages."""
import numpy as np
import torch
from tqdm import tqdm

from lib.transforms import resize


def to_tensor(images, device):
    """uint8 (B, H, W, C) numpy -> float (B, C, H, W) in [0, 1] on device."""
    x = torch.from_numpy(np.array(images, copy=True)).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def iter_features(model, images, batch_size, device, desc="features", size=None, normalize=True, embed=False):
    """Yield (start index, features (B, d, h, w) float32 on CPU) over images (N, H, W, C) uint8.

    `size`: resize the images to size x size first (training images stored at
    data.train_res are seen at data.res, as in evaluation).
    """
    model.eval()
    for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False):
        x = to_tensor(images[i:i + batch_size], device)
        x = x if size is None else resize(x, size)
        # embed: the features under a method's heads (probe, re-training); else what is scored
        yield i, (model.embed(x, normalize=normalize) if embed else model(x, normalize=normalize)).float().cpu()


def sample_pixel_index(n_images, h, w, n_points, seed):
    """A seeded, image-balanced sample of (image, y, x) pixel positions, sorted by image."""
    rng = np.random.default_rng(seed)
    per_image = np.full(n_images, n_points // n_images)
    per_image[rng.permutation(n_images)[: n_points % n_images]] += 1
    per_image = np.minimum(per_image, h * w)
    rows = []
    for i, m in enumerate(per_image):
        flat = rng.choice(h * w, size=m, replace=False)
        rows.append(np.stack([np.full(m, i), flat // w, flat % w], 1))
    return np.concatenate(rows).astype(np.int32)



def gather_pixel_features(model, images, index, batch_size, device, size, out=None, desc="train features",
                          embed=False):
    """Features (M, d) of the pixels index (M, 3) = (image, y, x) (sorted by image, at feature resolution).

    `out`: an array-like of shape (M, d) to write into (an HDF5 dataset, so that a
    large sample never sits in memory); a float32 array otherwise.
    """
    if out is None:
        out = np.zeros((len(index), model.dim if embed else model.out_channels), dtype=np.float32)
    starts = np.searchsorted(index[:, 0], np.arange(len(images) + 1))
    for i, z in iter_features(model, images, batch_size, device, desc, size=size, embed=embed):
        lo, hi = starts[i], starts[min(i + len(z), len(images))]
        rows = index[lo:hi]
        out[lo:hi] = z[rows[:, 0] - i, :, rows[:, 1], rows[:, 2]].numpy().astype(out.dtype)
    return out
