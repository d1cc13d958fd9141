"""Retrieval (PiCIE Figure 4): for chosen validation pixels (the queries), the training pixels whose
features are nearest (the retrieved), drawn as patches of their images.

The training side is the dump's seeded sample (features/features.h5,
train/features with its (image, y, x) index), so the search costs one
(M x d) @ (d x queries) product.
"""
import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib.io import save_figure  # noqa: E402


def retrieve(features_path, n_queries, k, seed):
    """Seeded query pixels of validation images and their k nearest sampled training pixels.

    Returns queries (Q, 3) = (val image, y, x), the retrieved (Q, k, 3) = (train image, y, x)
    and their cosine similarities (Q, k); positions are at feature resolution.
    """
    rng = np.random.default_rng(seed)
    with h5py.File(features_path, "r") as f:
        val = f["val/features"]
        n, _, h, w = val.shape
        queries = np.stack([rng.choice(n, n_queries, replace=n < n_queries), rng.integers(0, h, n_queries),
                            rng.integers(0, w, n_queries)], 1)
        q = torch.from_numpy(np.stack([val[i, :, y, x] for i, y, x in queries]).astype(np.float32))
        train = torch.from_numpy(f["train/features"][:].astype(np.float32))
        index = f["train/index"][:]
    sims = torch.nn.functional.normalize(train, dim=1) @ torch.nn.functional.normalize(q, dim=1).T  # (M, Q)
    top = sims.topk(min(k, len(train)), dim=0)
    return queries, index[top.indices.T.numpy()], top.values.T.numpy()


def _patch_box(ax, y, x, stride, scale, colour="red"):
    """The feature pixel's receptive centre, with a box exaggerated to 4 strides (as the paper's)."""
    side = 4 * stride * scale
    cy, cx = (y + 0.5) * stride * scale, (x + 0.5) * stride * scale
    ax.add_patch(plt.Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, color=colour, lw=1.5))


def plot_retrieval(val_images, train_images, queries, retrieved, sims, stride, path, labels=None, classes=None,
                   preds=None, mapping=None):
    """One row per query: the validation image, then its nearest training images, boxes on the pixels.

    With labels, the query's title gives its class and the class its cluster was matched to,
    green when they agree, red when not (the paper's Figure 4 shows both cases).
    """
    q, k = retrieved.shape[:2]
    scale = train_images.shape[1] / val_images.shape[1]  # training images may be stored larger
    fig, axes = plt.subplots(q, k + 1, figsize=(1.9 * (k + 1), 2.0 * q), squeeze=False)
    for r, (i, y, x) in enumerate(queries):
        ax = axes[r, 0]
        ax.imshow(val_images[i][..., :3])
        _patch_box(ax, y, x, stride, 1.0)
        py = min(int((y + 0.5) * stride), val_images.shape[1] - 1)
        px = min(int((x + 0.5) * stride), val_images.shape[2] - 1)
        title, colour = "query", "black"
        if labels is not None and classes:
            c = int(labels[i][py, px])
            title = f"gt {classes[c] if c < len(classes) else 'ignored'}"
            if preds is not None and mapping is not None:
                m = int(mapping[preds[i][py, px]])
                title += f"\npred {classes[m] if m >= 0 else 'unmatched'}"
                colour = "green" if m == c else "red"
        ax.set_title(title, fontsize=8, color=colour)
        for j, (ti, ty, tx) in enumerate(retrieved[r]):
            ax = axes[r, j + 1]
            ax.imshow(train_images[ti][..., :3])
            _patch_box(ax, ty, tx, stride, scale)
            ax.set_title(f"cos {sims[r, j]:.2f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
