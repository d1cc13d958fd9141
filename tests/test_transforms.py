import math

import torch
import torch.nn.functional as F

from lib.transforms import (_RGB2YIQ, BLUR_SIGMA, apply_geometric, gaussian_blur, identity_geometric, photometric,
                            sample_geometric)


def _regions(n=4, size=64, block=16, classes=3, seed=0):
    """Images constant on 16 x 16 blocks (a multiple of the stride 4): one-hot class maps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, classes, (n, size // block, size // block), generator=g)
    ids = ids.repeat_interleave(block, 1).repeat_interleave(block, 2)
    return F.one_hot(ids, classes).permute(0, 3, 1, 2).float()


def test_geometric_on_features_agrees_with_features_of_transformed_image():
    """G(f(x)) == f(G(x)) for f = 4x average pooling on a constant-per-region input.

    Compared away from region borders (where resampling mixes regions), the
    two must give the same region at every feature pixel: this is the
    correspondence that the equivariance loss relies on.
    """
    x = _regions()
    f = lambda im: F.avg_pool2d(im, 4)  # noqa: E731  a stride-4 "network"
    theta = sample_geometric(len(x), torch.Generator().manual_seed(1), scale=(0.5, 1.0))
    a = f(apply_geometric(x, theta, 64))  # features of the transformed image
    b = apply_geometric(f(x), theta, 16)  # transformed features
    pure = (a.max(1).values > 0.999) & (b.max(1).values > 0.999)
    assert pure.float().mean() > 0.5
    assert torch.equal(a.argmax(1)[pure], b.argmax(1)[pure])
    assert (a - b).abs().max(1).values[pure].max() < 1e-3


def test_geometric_flip_and_crop_really_transform():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    flip = torch.tensor([[[-1.0, 0, 0], [0, 1, 0]]])
    assert torch.equal(apply_geometric(x, flip, 4), x.flip(-1))
    assert torch.allclose(apply_geometric(x, identity_geometric(1), 4), x)
    theta = sample_geometric(100, torch.Generator().manual_seed(0), scale=(0.5, 1.0))
    area = theta[:, 0, 0].abs() * theta[:, 1, 1]
    assert area.min() >= 0.5 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert (theta[:, 0, 0] < 0).any() and (theta[:, 0, 0] > 0).any()  # both flipped and not
    # the crop stays inside the image
    assert ((theta[:, 0, 2].abs() + theta[:, 0, 0].abs()) <= 1 + 1e-6).all()


def test_photometric_applies_gray_jitter_and_blur():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, 16, 16)
    y = photometric(x, g)
    assert y.shape == x.shape and torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    gray = (y[:, 0] == y[:, 1]).all(-1).all(-1) & (y[:, 1] == y[:, 2]).all(-1).all(-1)
    assert 0.1 < gray.float().mean() < 0.3  # p = 0.2: grayscale really happens (the authors' never did)
    changed = (y - x).abs().flatten(1).mean(1) > 1e-3
    assert changed.float().mean() > 0.8
    # same generator state, same output: runs are reproducible
    assert torch.equal(photometric(x[:4], torch.Generator().manual_seed(5)),
                       photometric(x[:4], torch.Generator().manual_seed(5)))


def test_gaussian_blur_uses_each_images_sigma():
    x = torch.zeros(2, 1, 21, 21)
    x[:, :, 10, 10] = 1.0
    y = gaussian_blur(x, torch.tensor([BLUR_SIGMA[0], BLUR_SIGMA[1]]))
    assert torch.allclose(y.sum((1, 2, 3)), torch.ones(2), atol=1e-5)  # mass preserved
    assert y[0, 0, 10, 10] > 0.99  # sigma 0.1: barely blurred
    assert y[1, 0, 10, 10] < 0.05  # sigma 2: spread out
    # the spread of the second matches sigma = 2
    r2 = ((torch.arange(21.0) - 10) ** 2)
    var = (y[1, 0].sum(0) * r2).sum()
    assert abs(var.item() - 4.0) < 0.2


def test_photometric_leaves_infrared_untouched():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 4, 16, 16)
    y = photometric(x, g)
    assert y.shape == x.shape and torch.equal(y[:, 3], x[:, 3]) and not torch.equal(y[:, :3], x[:, :3])


def test_hue_bounds_the_hue_shift_in_turns():
    """aug.hue: on plain-coloured images (whose hue only the hue step moves, bar clipping), the largest shift is hue
    turns: none at 0, up to 0.1 at the authors' 0.1 (the default, the same draws), past 0.3 at 0.5."""
    x = torch.tensor([0.8, 0.3, 0.2]).view(1, 3, 1, 1).expand(400, 3, 8, 8).contiguous()
    yiq = lambda im: torch.einsum("ij,bjhw->bihw", _RGB2YIQ, im).mean((2, 3))  # noqa: E731

    def turns(hue):
        y = photometric(x, torch.Generator().manual_seed(3), hue)
        a, b = yiq(x), yiq(y)
        keep = b[:, 1:].norm(dim=1) > 0.02  # grayscale leaves no hue
        d = torch.atan2(b[keep, 2], b[keep, 1]) - torch.atan2(a[keep, 2], a[keep, 1])
        return ((d / (2 * math.pi) + 0.5) % 1.0 - 0.5).abs()

    assert turns(0.0).max() < 0.01  # (brightness clipping at 1 moves a hue a little)
    assert 0.07 < turns(0.1).max() < 0.11
    assert turns(0.5).max() > 0.3
    assert torch.equal(photometric(x, torch.Generator().manual_seed(3)), photometric(x, torch.Generator().manual_seed(3), 0.1))
