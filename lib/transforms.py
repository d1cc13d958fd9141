"""Batched photometric (P) and geometric (G) transforms, on whatever device the batch is.

Photometric transforms take the authors' settings (docs/method.md), without
their code's defects: grayscale and Gaussian blur really apply, and the blur
sigma is drawn from [0.1, 2]. Parameters are drawn per image from a
`torch.Generator`, so runs are reproducible from the seed.

A geometric transform is a random resized crop + horizontal flip expressed as
an affine map in normalised coordinates, so the *same* G can be applied to an
image (H x W) and to its feature map (H/4 x W/4): with `align_corners=False`
both grids cover the same field of view.
"""
import math

import torch
import torch.nn.functional as F

JITTER = dict(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, p=0.8)
GRAY_P = 0.2
BLUR_SIGMA = (0.1, 2.0)
BLUR_P = 0.5

_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _uniform(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _gray(x):
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(x, other, factor):
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp_(0, 1)


def _hue(x, shift):
    """Rotate chroma in YIQ space by `shift` turns: a batched hue shift."""
    m = _RGB2YIQ.to(x)
    yiq = torch.einsum("ij,bjhw->bihw", m, x)
    a = 2 * math.pi * shift.to(x)
    c, s = torch.cos(a).view(-1, 1, 1), torch.sin(a).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], 1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), yiq).clamp_(0, 1)


def gaussian_blur(x, sigma):
    """Blur image b with its own sigma[b] (separable, reflect padding)."""
    b, c, h, w = x.shape
    radius = min(int(math.ceil(3 * float(sigma.max()))), (min(h, w) - 1) // 2)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t[None] / sigma.to(x).view(-1, 1)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b*c, 2r+1)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def photometric(x, g, hue=JITTER["hue"]):
    """P(x) for a batch in [0, 1]: colour jitter (p=0.8), grayscale (p=0.2), blur (p=0.5).

    `hue`: the largest hue shift, in turns (aug.hue; 0.1 is the authors' ColorJitter); the same random
    draws whatever its value, scaled. Only the RGB channels are transformed; extra ones (Potsdam's
    infrared) pass unchanged.
    """
    if x.shape[1] > 3:
        return torch.cat([photometric(x[:, :3], g, hue), x[:, 3:]], 1)
    n = x.shape[0]
    dev = x.device
    x = x.clone()
    jit = (torch.rand(n, generator=g) < JITTER["p"]).to(dev)
    ones = torch.ones(n, device=dev)

    def factor(amount):
        f = _uniform(n, 1 - amount, 1 + amount, g).to(dev)
        return torch.where(jit, f, ones)

    for op in torch.randperm(4, generator=g).tolist():  # ColorJitter applies in random order
        if op == 0:
            x = (x * factor(JITTER["brightness"]).view(-1, 1, 1, 1)).clamp_(0, 1)
        elif op == 1:
            x = _blend(x, _gray(x).mean((2, 3), keepdim=True), factor(JITTER["contrast"]))
        elif op == 2:
            x = _blend(x, _gray(x), factor(JITTER["saturation"]))
        else:
            shift = _uniform(n, -hue, hue, g).to(dev) * jit
            x = _hue(x, shift)
    gray = (torch.rand(n, generator=g) < GRAY_P).to(dev).view(-1, 1, 1, 1)
    x = torch.where(gray, _gray(x).expand_as(x), x)
    blur = torch.rand(n, generator=g) < BLUR_P
    sigma = _uniform(n, *BLUR_SIGMA, g)
    if blur.any():
        idx = blur.nonzero().squeeze(1).to(dev)
        x[idx] = gaussian_blur(x[idx], sigma[blur].to(dev)).clamp_(0, 1)
    return x


def sample_geometric(n, g, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5, measure="area"):
    """Random resized crop + h-flip, as (n, 2, 3) affine maps. The crop's fraction of the image is drawn
    uniformly in `scale`: a fraction of its area (measure="area", torchvision's) or of its side
    (measure="side", as PiCIE's authors' transform does: area = side fraction squared)."""
    area = _uniform(n, scale[0], scale[1], g)
    if measure == "side":
        area = area * area
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # half-widths in normalised [-1, 1] units
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=g) < flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    return theta


def identity_geometric(n):
    return torch.eye(2, 3).expand(n, 2, 3).clone()


def resize(x, size):
    """x (B, C, H, W) resized to size x size (antialiased), or x itself if it is that size."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def apply_geometric(x, theta, size):
    """G(x): resample x (B, C, H, W) through the affine maps onto a size x size grid."""
    grid = F.affine_grid(theta.to(x), (x.shape[0], x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
