"""Scoring with the dense CRF at COCO-Stuff-27's protocol: images per second with and without it, and its
agreement with pydensecrf where that is installed (not a test).

    python bench/crf.py                  # 16 photos at 320 px, 27 classes, STEGO's CRF settings
    python bench/crf.py --images 32 --classes 27 --side 320

The images are scikit-image's photographs, centre-cropped and resized to the side; the scores are
random (27, side/4, side/4) maps, smooth at stride 4 as a network's are, through `lib.scoring.Scorer`
as the evaluate stage uses it (the time of the CRF does not depend on what the scores say, the lattice's
size does on the image's colours: hence photos). Three timings: without the CRF (upsample, argmax), with
it in one process of one thread, and with it on every core (runtime.workers: 0, one process an image).

pydensecrf: its maintained fork (`pip install pydensecrf2`, which needs a C++ compiler) is not a
requirement; where it imports, the same images and scores go through its DenseCRF2D with the same
settings and the marginals and labels are compared with lib/crf.py's.
"""
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
import typer
from PIL import Image
from skimage import data as skdata

from lib.cli import n_workers
from lib.clustering import argmax_classifier
from lib.config import load_params
from lib.crf import dense_crf
from lib.scoring import Scorer, crf_params, log_probabilities

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def photos(n, side):
    out = []
    for i in range(n):
        im = getattr(skdata, PHOTOS[i % len(PHOTOS)])()
        h, w = im.shape[:2]
        s = min(h, w)
        crop = Image.fromarray(im[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2])
        # a different crop scale per repeat, so that no two images are the same
        zoom = 1 + 0.1 * (i // len(PHOTOS))
        out.append(np.asarray(crop.resize((round(side * zoom),) * 2, Image.BILINEAR))[:side, :side].copy())
    return out


def pydensecrf_marginals(image, log_probs, p):
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    k, h, w = log_probs.shape
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(torch.softmax(log_probs, 0).numpy())))
    d.addPairwiseGaussian(sxy=p.gaussian_sxy, compat=p.gaussian_weight)
    d.addPairwiseBilateral(sxy=p.bilateral_sxy, srgb=p.bilateral_srgb, rgbim=np.ascontiguousarray(image),
                           compat=p.bilateral_weight)
    return torch.from_numpy(np.array(d.inference(p.iterations)).reshape(k, h, w))


def main(images: int = 16, classes: int = 27, side: int = 320, params: str = "params.yaml"):
    e = load_params(params).eval
    ims = photos(images, side)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(images, classes, side // 4, side // 4, generator=g), 1)
    clf = argmax_classifier(classes)
    print(f"{images} photos at {side} px, {classes} classes, CRF: {e.crf_iterations} iterations, "
          f"Gaussian sxy {e.crf_gaussian_sxy} w {e.crf_gaussian_weight}, bilateral sxy {e.crf_bilateral_sxy} "
          f"srgb {e.crf_bilateral_srgb} w {e.crf_bilateral_weight}; torch threads {torch.get_num_threads()}")
    rows = []
    every = n_workers(0)
    for name, change, workers in (("no CRF", dict(crf=False), 1), ("CRF, 1 process, 1 thread", dict(crf=True), 1),
                                  (f"CRF, {every} processes (runtime.workers: 0)", dict(crf=True), every)):
        settings = SimpleNamespace(**{**vars(e), "flip": False, **change})
        threads = torch.get_num_threads()
        if change["crf"] and workers == 1:
            torch.set_num_threads(1)
        with Scorer(clf, "probabilities", settings, workers=workers) as scorer:
            scorer.labels(probs[:1], ims[:1])  # warm-up (and the pool's start, which a stage pays once)
            t = time.perf_counter()
            scorer.labels(probs, ims)
            seconds = time.perf_counter() - t
        torch.set_num_threads(threads)
        rows.append((name, images / seconds))
        print(f"{name:40s} {images / seconds:8.2f} images/s", flush=True)
    try:
        import pydensecrf  # noqa: F401
    except ImportError:
        print("pydensecrf not installed: no comparison")
        return
    p = crf_params(e)
    agree, worst, times = [], 0.0, []
    torch.set_num_threads(1)
    for im, pr in zip(ims, probs):
        logp = log_probabilities(F.interpolate(pr[None], size=(side, side), mode="bilinear",
                                               align_corners=False), "probabilities")[0]
        t = time.perf_counter()
        ref = pydensecrf_marginals(im, logp, p)
        times.append(time.perf_counter() - t)
        ours = dense_crf(im, logp, p)
        agree.append(float((ours.argmax(0) == ref.argmax(0)).float().mean()))
        worst = max(worst, float((ours - ref).abs().max()))
    print(f"{'pydensecrf, 1 thread':40s} {len(times) / sum(times):8.2f} images/s")
    print(f"agreement with pydensecrf: labels {100 * min(agree):.3f}-{100 * max(agree):.3f} % of pixels per image, "
          f"largest marginal difference {worst:.2e}")


if __name__ == "__main__":
    typer.run(main)
