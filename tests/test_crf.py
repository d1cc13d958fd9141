"""The dense CRF (lib/crf.py): what it does to labels, and how close its lattice is to every pixel pair."""
import numpy as np
import pytest
import torch

from lib.crf import CRFParams, Lattice, dense_crf, naive_dense_crf


def two_regions(h=24, w=28, seed=0):
    """A red left half and a blue right half (with a little pixel noise), and the truth: 0 left, 1 right."""
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), np.float64)
    image[:, : w // 2] = (200, 40, 40)
    image[:, w // 2:] = (40, 40, 200)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2:] = 1
    return image, truth


def noisy_logits(truth, k=3, margin=0.4, noise=1.2, seed=0):
    """Logits that favour the truth a little, with noise that puts more than half of the pixels elsewhere."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(k, *truth.shape, generator=g) * noise
    logits.scatter_add_(0, torch.from_numpy(truth)[None], torch.full((1, *truth.shape), margin))
    return logits


def test_the_labels_follow_the_colour_regions_and_do_not_without_the_bilateral_kernel():
    image, truth = two_regions()
    logits = noisy_logits(truth)
    alone = (logits.argmax(0).numpy() == truth).mean()
    assert 0.3 < alone < 0.5  # the unaries disagree with the regions on more than half of the pixels
    q = dense_crf(image, logits)
    assert q.shape == (3, *truth.shape) and torch.isfinite(q).all()
    assert torch.allclose(q.sum(0), torch.ones(truth.shape), atol=1e-5)
    assert (q.argmax(0).numpy() == truth).mean() >= 0.99
    without = dense_crf(image, logits, CRFParams(bilateral_weight=0.0)).argmax(0).numpy()
    # the positions-only kernel (std 1 px) smooths locally but cannot see the regions
    assert (without == truth).mean() < 0.8
    # and no CRF at all (weights 0): the unaries' own argmax
    none = dense_crf(image, logits, CRFParams(gaussian_weight=0.0, bilateral_weight=0.0)).argmax(0).numpy()
    assert np.array_equal(none, logits.argmax(0).numpy())


@pytest.mark.parametrize("d", [2, 5])
def test_the_lattice_filter_is_a_gaussian_blur_within_its_approximation(d):
    # normalised by the filter of ones, as the CRF uses it: within 10 % of the exact Gaussian sum (the
    # permutohedral lattice's known approximation; its unnormalised scale is off by more, which the
    # normalisation removes)
    g = torch.Generator().manual_seed(d)
    f = torch.rand(300, d, generator=g) * 3
    v = torch.rand(300, 4, generator=g)
    lattice = Lattice(f)
    exact = torch.exp(-0.5 * torch.cdist(f, f) ** 2)
    ratio = (lattice.filter(v) / lattice.filter(torch.ones(300, 1))) / (exact @ v / exact.sum(1, keepdim=True))
    assert (ratio - 1).abs().max() < 0.1
    # far apart points do not talk to each other
    far = torch.cat([f, f + 100])
    values = torch.cat([torch.ones(300, 1), torch.zeros(300, 1)])
    assert Lattice(far).filter(values)[300:].abs().max() < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_crf_agrees_with_the_naive_dense_mean_field(seed):
    """Tolerance: on 24 x 28 images, STEGO's settings, 10 iterations, the lattice's marginals are within
    0.03 of the exact ones on average and their labels agree on 99 % of the pixels (the noisy two-region
    images above); on pure-noise unaries, where mean field is bistable at many pixels, on 95 % of them."""
    image, truth = two_regions(seed=seed)
    for logits, agree in ((noisy_logits(truth, seed=seed), 0.99),
                          (torch.randn(4, *truth.shape, generator=torch.Generator().manual_seed(seed)) * 2, 0.95)):
        q, exact = dense_crf(image, logits), naive_dense_crf(image, logits)
        assert (q - exact).abs().mean() < 0.03
        assert (q.argmax(0) == exact.argmax(0)).float().mean() >= agree
    # the positions-only kernel alone on a lattice of 2-D positions: closer still
    p = CRFParams(bilateral_weight=0.0)
    q, exact = dense_crf(image, logits, p), naive_dense_crf(image, logits, p)
    assert (q - exact).abs().mean() < 0.01


def test_an_image_the_crf_cannot_key_gives_a_clear_error():
    # positions spread over more than 64 bits of lattice keys (a std far below a pixel)
    image = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="too spread"):
        dense_crf(image, torch.zeros(2, 8, 8), CRFParams(bilateral_sxy=1e-9, bilateral_srgb=1e-9))
