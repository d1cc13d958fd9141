"""Streaming preparation: decode in worker processes, write in order into
memory-mapped .npy arrays, so that a dataset of any size is prepared in
bounded memory, on every core, with a progress bar."""
from multiprocessing import get_context

import numpy as np
from tqdm import tqdm


def parallel_map(fn, items, workers, desc):
    """Yield fn(item) for each item, in order, computed by `workers` processes."""
    items = list(items)
    bar = tqdm(total=len(items), desc=desc, unit="item", leave=False, mininterval=1.0)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
            bar.update()
    else:
        # fork: workers inherit the loaded modules instead of re-importing them
        with get_context("fork").Pool(workers) as pool:
            for result in pool.imap(fn, items, chunksize=max(1, min(16, len(items) // (8 * workers)))):
                yield result
                bar.update()
    bar.close()


def write_split(out, split, items, load, counts, side, workers, channels=3, labelled=True):
    """Write `{split}_images.npy` (N, side, side, channels) and `{split}_labels.npy` (N, side, side).

    load(item) returns (images (n, side, side, channels) uint8, labels (n, side, side)
    uint8 or None) with n = counts[i]. Returns the label histogram (256,) or None.
    """
    total = int(sum(counts))
    images = np.lib.format.open_memmap(out / f"{split}_images.npy", "w+", np.uint8, (total, side, side, channels))
    labels = (np.lib.format.open_memmap(out / f"{split}_labels.npy", "w+", np.uint8, (total, side, side))
              if labelled else None)
    hist = np.zeros(256, dtype=np.int64) if labelled else None
    j = 0
    for (im, lab), n in zip(parallel_map(load, items, workers, f"prepare {split}"), counts):
        assert len(im) == n, f"loader returned {len(im)} images for an item expected to give {n}"
        images[j:j + n] = im
        if labelled:
            labels[j:j + n] = lab
            hist += np.bincount(lab.ravel(), minlength=256)
        j += n
    images.flush()
    if labelled:
        labels.flush()
    return hist
