"""Hungarian-matched pixel accuracy and IoU, as the authors scored unsupervised segmentation.

A histogram of (ground-truth class, cluster) counts is matched one-to-one
(scipy's linear_sum_assignment, maximising matched pixels); pixels of
clusters left unmatched (K > classes) count as errors. Partitions (things,
stuff) are scored on the same matching with the other classes' pixels ignored.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from lib.data.base import IGNORE


def histogram(gt, pred, n_classes, k):
    """(n_classes, k) counts of ground-truth class (rows) against cluster id (columns)."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    keep = (gt != IGNORE) & (gt < n_classes)
    return np.bincount(gt[keep] * k + pred[keep], minlength=n_classes * k).reshape(n_classes, k)


def confusion(predictions, labels, n_classes, k):
    """The one validation scoring loop: the (n_classes, k) histogram of labels (N, H, W) against the label
    maps that `predictions` yields as (index of the first image, maps (B, H, W)), in batches of any size."""
    hist = np.zeros((n_classes, k), dtype=np.int64)
    for i, pred in predictions:
        hist += histogram(labels[i:i + len(pred)], pred, n_classes, k)
    return hist


def hungarian(hist):
    """cluster -> matched class (-1 if unmatched), maximising the matched pixel count."""
    rows, cols = linear_sum_assignment(hist, maximize=True)
    mapping = np.full(hist.shape[1], -1, dtype=np.int64)
    mapping[cols] = rows
    return mapping


def matched_confusion(hist, mapping):
    """(C, C + 1) confusion of class against matched class; the last column = unmatched clusters."""
    c = hist.shape[0]
    conf = np.zeros((c, c + 1), dtype=np.int64)
    for cluster, cls in enumerate(mapping):
        conf[:, cls if cls >= 0 else c] += hist[:, cluster]
    return conf


def scores(conf, classes=None):
    """Pixel accuracy, per-class IoU and mIoU (nan-mean) over the rows `classes` (all if None).

    With a subset, pixels of other ground-truth classes are ignored: they are
    neither correct, nor missed, nor false positives of the subset's classes.
    """
    c = conf.shape[0]
    rows = np.arange(c) if classes is None else np.asarray(classes, dtype=np.int64)
    sub = conf[rows]
    tp = conf[rows, rows].astype(np.float64)
    total = sub.sum()
    acc = tp.sum() / total if total else float("nan")
    union = sub.sum(1) + sub[:, rows].sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    miou = float(np.nanmean(iou)) if np.any(union > 0) else float("nan")
    return float(acc), iou, miou


def majority(hist):
    """Each cluster's majority ground-truth class (-1 for a cluster with no labelled pixel): Fig. 3's colours."""
    hist = np.asarray(hist)
    return np.where(hist.sum(0) > 0, hist.argmax(0), -1)


def flat_scores(conf, class_names, things=(), stuff=()):
    """Flat metrics in percent (acc, miou, iou_<class>, things_*, stuff_*) of a class x class confusion."""
    acc, iou, miou = scores(conf)
    out = {"acc": 100 * acc, "miou": 100 * miou}
    for name, value in zip(class_names, iou):
        out[f"iou_{name}"] = 100 * float(value)
    for part, ids in (("things", things), ("stuff", stuff)):
        if len(ids):
            a, _, m = scores(conf, ids)
            out[f"{part}_acc"], out[f"{part}_miou"] = 100 * a, 100 * m
    return {k: (round(v, 4) if np.isfinite(v) else None) for k, v in out.items()}


def evaluate_histogram(hist, class_names, things=(), stuff=()):
    """Hungarian-matched flat metrics of a class x cluster histogram, the matching and its confusion."""
    mapping = hungarian(hist)
    conf = matched_confusion(hist, mapping)
    return flat_scores(conf, class_names, things, stuff), mapping, conf
