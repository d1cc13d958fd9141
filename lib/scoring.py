"""How a classifier's per-pixel scores become labels: as PiCIE's authors scored (eval.flip and eval.crf
off: the scores upsampled bilinearly, argmax), or as papers since STEGO score.

- eval.flip: the scores are averaged with those of the horizontally flipped image, flipped back. For
  a prototype or linear classifier that equals averaging the features first, as STEGO does; IIC's and
  InfoSeg's probabilities and STEGO's cosines are averaged as they are.
- eval.crf: the dense CRF (lib/crf.py) on the image and the softmax of the upsampled scores, its
  marginals' argmax. Every classifier's scores become log-probabilities the same way (`log_probabilities`).

On the CPU the CRF runs in a pool of processes, one image each (runtime.workers), each with one torch
thread; on a GPU in the stage's process.
"""
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F

from lib.clustering import classifier_scores, upsample_scores
from lib.crf import CRFParams, dense_crf
from lib.features import to_tensor

# STEGO's cluster probe turns its cosines into probabilities at this inverse temperature; with it a
# cosine scores as a prototype's -|z - mu|^2 = 2 cos - 2 does for unit z and mu
COSINE_SCALE = 2.0


def log_probabilities(scores, kind):
    """Per-pixel log-probabilities (B, K, H, W) of a classifier's scores: `prototype` (-|z - mu|^2 up to a
    per-pixel constant) and `linear` (logits): their log-softmax; `probabilities` (IIC, InfoSeg): their log;
    `cosines` (STEGO's cluster probe): the log-softmax of COSINE_SCALE times them."""
    if kind in ("prototype", "linear"):
        return F.log_softmax(scores, 1)
    if kind == "probabilities":
        return torch.log(scores.clamp(min=1e-12))
    if kind == "cosines":
        return F.log_softmax(COSINE_SCALE * scores, 1)
    raise ValueError(f"unknown kind of scores {kind!r}")


def score_kind(classifier, outputs):
    """What the scores of a resolved model.classifier are: a prototype's or linear classifier's own, or, for
    argmax, the network's outputs (its method's row: probabilities or cosines)."""
    return outputs if classifier == "argmax" else classifier


def crf_params(e):
    return CRFParams(e.crf_iterations, e.crf_gaussian_sxy, e.crf_gaussian_weight, e.crf_bilateral_sxy,
                     e.crf_bilateral_srgb, e.crf_bilateral_weight)


def _init_worker():
    torch.set_num_threads(1)  # one image per process: the processes, not threads, use the cores


def crf_labels(image, log_probs, params, size, device="cpu"):
    """The labels of one image (H, W, 3) uint8 from its log-probabilities (K, H, W): the argmax of the CRF's
    marginals, upsampled bilinearly to `size` first where it is not the image's."""
    q = dense_crf(image, torch.as_tensor(log_probs), params, device)[None].cpu()
    return _argmax(q if tuple(size) == tuple(q.shape[2:]) else upsample_scores(q, size))


class Scorer:
    """Labels of images from their features under a classifier, by params' eval section.

    model: the network the features came from (needed for eval.flip only); workers: the CRF's processes
    on the CPU (each image is labelled alike in any of them); use as a context manager (the CRF's
    process pool lives in it).
    """

    def __init__(self, clf, kind, e, model=None, device="cpu", workers=1):
        if e.flip and model is None:
            raise ValueError("eval.flip needs the model")
        self.clf, self.kind, self.model, self.device = clf, kind, model, torch.device(device)
        self.flip, self.crf = e.flip, e.crf
        self.params = crf_params(e)
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.crf and self.device.type == "cpu" and self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, get_context("spawn"), initializer=_init_worker)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    @torch.no_grad()
    def scores(self, z, images):
        """The classifier's scores (B, K, h, w) of features z (B, d, h, w) of images (B, H, W, 3) uint8,
        averaged with the flipped images' where eval.flip says."""
        s = classifier_scores(z.float(), self.clf)
        if self.flip:
            x = to_tensor(np.ascontiguousarray(np.asarray(images)[:, :, ::-1]), self.device)
            # through float16, as the dump stores the unflipped features: a mirror image scores alike
            zf = self.model(x).half().float().cpu()
            s = (s + classifier_scores(zf, self.clf).flip(-1)) / 2
        return s

    def labels(self, z, images, sizes=None):
        """Labels (uint8 arrays) of each image at its size in `sizes` (default: the image's own): the
        scores upsampled bilinearly to the image, refined by the CRF where eval.crf says, upsampled to
        the size asked (predict: the original photo's)."""
        images = list(images)
        sizes = sizes or [im.shape[:2] for im in images]
        s = self.scores(z, np.stack(images) if self.flip else images)
        if not self.crf:
            return [_argmax(upsample_scores(s[i:i + 1], hw)) for i, hw in enumerate(sizes)]
        logp = [log_probabilities(upsample_scores(s[i:i + 1], im.shape[:2]), self.kind)[0] for i, im in enumerate(images)]
        if self.pool is None:
            return [crf_labels(im, lp, self.params, hw, self.device) for im, lp, hw in zip(images, logp, sizes)]
        n = len(images)
        return list(self.pool.map(crf_labels, images, [lp.numpy() for lp in logp], [self.params] * n, sizes))


def _argmax(s):
    return s[0].argmax(0).numpy().astype(np.uint8)


def protocol(e):
    """How the labels were made, in words (metrics' readers, the report, predict)."""
    if not (e.flip or e.crf):
        return "no flip, no CRF (PiCIE's protocol)"
    return " + ".join((["flip averaging"] if e.flip else []) + ([f"dense CRF ({e.crf_iterations} iterations)"] if e.crf else []))
