"""Scoring as papers since STEGO score (lib/scoring.py): flip averaging, every classifier's scores as the
CRF's unaries, the CRF's process pool."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.clustering import argmax_classifier, prototype_classifier
from lib.config import load_params
from lib.scoring import COSINE_SCALE, Scorer, log_probabilities, protocol, score_kind
from tests.conftest import ROOT


def eval_params(**change):
    return SimpleNamespace(**{**vars(load_params(ROOT / "params.yaml").eval), **change})


class Conv(torch.nn.Module):
    """A one-layer network: features = conv(image), kernel size k (1: it sees each pixel alone)."""

    def __init__(self, k, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, k, padding=k // 2)

    def forward(self, x, normalize=True):
        return self.conv(x)


def mirror_image(h=12, w=16, seed=0):
    """An image equal to its horizontal mirror."""
    half = np.random.default_rng(seed).integers(0, 255, (h, w // 2, 3), dtype=np.uint8)
    return np.concatenate([half, half[:, ::-1]], 1)


def features(model, images):
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return model(x).half().float()  # as the dump stores them


def test_each_classifiers_scores_become_log_probabilities_as_stated():
    z = F.normalize(torch.randn(1, 5, 3, 4), dim=1)
    mu = torch.randn(6, 5)
    scores = torch.einsum("bdhw,kd->bkhw", z, 2 * mu) - (mu * mu).sum(1).view(1, -1, 1, 1)
    distance = ((z[:, None] - mu[None, :, :, None, None]) ** 2).sum(2)  # (1, K, h, w), by hand
    assert torch.allclose(log_probabilities(scores, "prototype"), F.log_softmax(-distance, 1), atol=1e-5)
    p = torch.softmax(torch.randn(1, 6, 3, 4), 1)
    assert torch.allclose(log_probabilities(p, "probabilities"), p.log())
    cos = torch.rand(1, 6, 3, 4) * 2 - 1
    assert torch.allclose(log_probabilities(cos, "cosines").exp(), torch.softmax(COSINE_SCALE * cos, 1))
    # the method's outputs only matter where the network's own argmax scores it
    assert score_kind("argmax", "probabilities") == "probabilities"
    assert score_kind("prototype", "features") == "prototype"
    with pytest.raises(ValueError, match="unknown kind"):
        log_probabilities(cos, "logits")


def test_flip_averaging_on_a_mirror_image_equals_no_flip_unless_the_model_breaks_the_symmetry():
    image = mirror_image()
    clf = prototype_classifier(torch.randn(3, 4))
    for k, alike in ((1, True), (3, False)):
        model = Conv(k)
        z = features(model, [image])
        plain = Scorer(clf, "prototype", eval_params(), model).scores(z, [image])
        flipped = Scorer(clf, "prototype", eval_params(flip=True), model).scores(z, [image])
        # a 1x1 network maps a mirror image to mirror features; a 3x3 one with a random kernel does not
        assert torch.allclose(plain, flipped, atol=1e-6) == alike, k
    # and what flip averaging is, by hand: the mean of the scores and the flipped image's, flipped back
    other = np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    zf = features(model, [other[:, ::-1].copy()])
    by_hand = (Scorer(clf, "prototype", eval_params(), model).scores(features(model, [other]), [other])
               + Scorer(clf, "prototype", eval_params(), model).scores(zf, [other]).flip(-1)) / 2
    assert torch.allclose(Scorer(clf, "prototype", eval_params(flip=True), model).scores(
        features(model, [other]), [other]), by_hand, atol=1e-6)


def test_without_flip_or_crf_the_labels_are_the_upsampled_scores_argmax():
    image = mirror_image()
    model, clf = Conv(3), prototype_classifier(torch.randn(3, 4))
    z = F.avg_pool2d(features(model, [image]), 4)  # features at stride 4, as the networks give them
    labels = Scorer(clf, "prototype", eval_params(), model).labels(z, [image])[0]
    scores = F.interpolate(torch.einsum("bdhw,kd->bkhw", z, clf[:, :-1]) + clf[:, -1].view(1, -1, 1, 1),
                           size=image.shape[:2], mode="bilinear", align_corners=False)
    assert labels.dtype == np.uint8 and np.array_equal(labels, scores[0].argmax(0).numpy())


def test_the_crf_in_a_process_pool_labels_as_in_one_process():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
    probabilities = torch.softmax(torch.randn(3, 5, 5, 6), 1)  # IIC's outputs, at stride 4
    clf = argmax_classifier(5)
    with Scorer(clf, "probabilities", eval_params(crf=True), workers=1) as one:
        assert one.pool is None
        alone = one.labels(probabilities, images)
    with Scorer(clf, "probabilities", eval_params(crf=True), workers=2) as two:
        assert two.pool is not None
        pooled = two.labels(probabilities, images)
    assert all(np.array_equal(a, b) for a, b in zip(alone, pooled))
    # the CRF changed something: these are not the scores' own argmax
    plain = Scorer(clf, "probabilities", eval_params()).labels(probabilities, images)
    assert not all(np.array_equal(a, b) for a, b in zip(alone, plain))


def test_the_protocol_is_named():
    assert protocol(eval_params()) == "no flip, no CRF (PiCIE's protocol)"
    assert protocol(eval_params(flip=True, crf=True)) == "flip averaging + dense CRF (10 iterations)"
    with pytest.raises(ValueError, match="eval.flip needs the model"):
        Scorer(argmax_classifier(2), "probabilities", eval_params(flip=True))
