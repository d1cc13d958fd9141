"""The dense CRF of Kraehenbuehl & Koltun (NIPS 2011) that papers since STEGO score with, in torch.

Mean field over a fully connected CRF with Potts compatibility and two
kernels, a Gaussian on positions (std `gaussian_sxy` px, weight
`gaussian_weight`) and a bilateral on positions and colours (stds
`bilateral_sxy` px and `bilateral_srgb` levels, weight `bilateral_weight`),
each normalised symmetrically as the authors' densecrf library does by
default: pixel i's message is n_i sum_j k(i, j) n_j Q_j, n = (sum_j k(i, j))^-1/2, j = i included.
Q_0 = softmax(log p), Q_t+1 = softmax(log p + sum over kernels of weight * message(Q_t)), p the
classifier's probabilities clipped at 1e-5 (as pydensecrf's `unary_from_softmax`).

The kernels are filtered on a permutohedral lattice (Adams, Baek & Davis 2010), as densecrf does and
with its constants, so that the scores are those papers report: it costs O(pixels), not O(pixels^2),
and approximates the Gaussians (`naive_dense_crf`, every pixel pair exactly, is the tests' reference).
Why not pydensecrf itself: it has no wheel for this Python, and its maintained fork builds only with a
C++ compiler (a minute of every clean CI run, and a compiler the project cannot assume); this runs
wherever torch does, GPU included, and bench/crf.py compares the two where the fork is installed.
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

CLIP = 1e-5


@dataclass(frozen=True)
class CRFParams:
    iterations: int = 10
    gaussian_sxy: float = 1.0
    gaussian_weight: float = 3.0
    bilateral_sxy: float = 67.0
    bilateral_srgb: float = 3.0
    bilateral_weight: float = 4.0


class Lattice:
    """The permutohedral lattice of N points with positions f (N, d), already divided by the kernel's
    stds: `filter(v)` ~ sum_j exp(-|f_i - f_j|^2 / 2) v_j for values v (N, C), in O(N d^2 + vertices d C)."""

    def __init__(self, f):
        f = f.double()
        n, d = f.shape
        self.d = d
        dev = f.device
        # elevate onto the hyperplane x . 1 = 0 of R^(d+1), scaled so that the blur below is a Gaussian of std 1
        i = torch.arange(1, d + 1, device=dev, dtype=torch.float64)
        cf = f * ((d + 1) * math.sqrt(2 / 3) / torch.sqrt(i * (i + 1)))
        suffix = torch.cat([cf.flip(1).cumsum(1).flip(1), cf.new_zeros(n, 1)], 1)  # suffix[:, j] = sum_{m>=j} cf_m
        elevated = suffix.clone()
        elevated[:, 1:] -= i * cf
        # the nearest remainder-0 lattice point, then the simplex the point lies in (its coordinates' ranks)
        rounded = torch.round(elevated / (d + 1))
        rem0 = rounded * (d + 1)
        total = rounded.sum(1, keepdim=True).long()
        diff = elevated - rem0
        j = torch.arange(d + 1, device=dev)
        above = diff[:, None, :] > diff[:, :, None]  # [n, a, b]: b's coordinate is larger than a's
        tie_before = (diff[:, None, :] == diff[:, :, None]) & (j[None, :] < j[:, None])[None]
        rank = (above | tie_before).sum(2) + total
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d + 1, torch.where(high, rank - d - 1, rank))
        rem0 = torch.where(low, rem0 + d + 1, torch.where(high, rem0 - d - 1, rem0))
        # barycentric weights of the simplex's d + 1 vertices
        v = (elevated - rem0) / (d + 1)
        bary = torch.zeros(n, d + 2, device=dev, dtype=torch.float64)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d - rank + 1, -v)
        bary[:, 0] += 1 + bary[:, d + 1]
        self.bary = bary[:, :d + 1].float()
        # vertex r of the simplex: rem0 + the canonical simplex's r-th vertex, permuted by rank
        r = torch.arange(d + 1, device=dev)
        canonical = torch.where(j[None, :] <= d - r[:, None], r[:, None], r[:, None] - d - 1)  # [r, rank]
        keys = rem0.long()[:, None, :d] + canonical[:, rank[:, :d]].permute(1, 0, 2)  # (n, d + 1, d)
        # one integer per vertex (mixed radix, with room for the neighbours' +-(d + 1)); sorted, unique
        lo = keys.amin((0, 1)) - (d + 1)
        span = keys.amax((0, 1)) + (d + 1) - lo + 1
        if float(torch.log2(span.double()).sum()) > 62:
            raise ValueError("lattice: positions too spread for 64-bit keys (raise the kernel's std)")
        self.radix = torch.cat([span.flip(0).cumprod(0).flip(0)[1:], span.new_ones(1)])
        codes = ((keys - lo) * self.radix).sum(2)
        self.codes, offsets = torch.unique(codes, return_inverse=True)  # offsets (n, d + 1): each point's vertices
        # splat, blur and slice as sparse matrices, built once per image and applied to every label's values:
        # a point's d + 1 vertices by their barycentric weights (slice), the same transposed (splat), and a
        # vertex with half of each of its two neighbours along each of the d + 1 lattice directions (blur)
        m = len(self.codes)
        self.slice = _csr(offsets, self.bary, m)
        by_vertex = offsets.reshape(-1).argsort(stable=True)  # stable: each vertex's points in order
        points = torch.arange(n, device=dev).repeat_interleave(d + 1)
        self.splat = _csr(points[by_vertex], self.bary.reshape(-1)[by_vertex], n,
                          crow=torch.bincount(offsets.reshape(-1), minlength=m))
        step = -self.radix.sum()
        self.blurs = []
        for axis in range(d + 1):
            delta = step + ((d + 1) * self.radix[axis] if axis < d else 0)
            cols = torch.stack([self._find(self.codes + delta), torch.arange(m, device=dev),
                                self._find(self.codes - delta)], 1)
            weights = torch.tensor([0.5, 1.0, 0.5], device=dev).expand(m, 3)
            self.blurs.append(_csr(cols, weights, m))
        self.alpha = 1 / (1 + 2 ** -d)

    def _find(self, codes):
        """The vertex of each code; -1 where the lattice has none (a neighbour that holds nothing)."""
        idx = torch.searchsorted(self.codes, codes).clamp(max=len(self.codes) - 1)
        return torch.where(self.codes[idx] == codes, idx, -1)

    def filter(self, values):
        """Splat values (N, C) onto the lattice, blur with [1/2, 1, 1/2] along each direction, slice back."""
        grid = self.splat @ values
        for blur in self.blurs:
            grid = blur @ grid
        return self.alpha * (self.slice @ grid)


def _csr(cols, vals, n_cols, crow=None):
    """A CSR matrix from each row's entries: cols and vals (R, w), -1 for no entry; or, with crow (the
    count of each row's entries), from flat cols and vals already in row order."""
    if crow is None:
        cols, order = torch.where(cols < 0, n_cols, cols).sort(1)  # columns in order, absent ones last
        vals = vals.gather(1, order)
        keep = cols < n_cols
        crow, cols, vals = keep.sum(1), cols[keep], vals[keep]
    crow = torch.cat([crow.new_zeros(1), crow.cumsum(0)])
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta; the products used here are plain
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, cols, vals.float(), (len(crow) - 1, n_cols))


def bilateral_features(image, sxy, srgb):
    """(x / sxy, y / sxy, r / srgb, g / srgb, b / srgb) of every pixel of image (H, W, C) uint8 -> (HW, 5); of
    an image with more channels than colours (Potsdam's R, G, B, IR), the first three."""
    h, w = image.shape[:2]
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    rgb = torch.as_tensor(np.ascontiguousarray(image[..., :3])).reshape(h * w, 3).float()
    return torch.cat([torch.stack([x.reshape(-1), y.reshape(-1)], 1) / sxy, rgb / srgb], 1)


def softmax_unaries(log_probs):
    """The CRF's unaries: the classifier's log-probabilities with its probabilities clipped at CLIP."""
    return torch.log(torch.softmax(log_probs, 0).clamp(min=CLIP))


def dense_crf(image, log_probs, p=CRFParams(), device="cpu"):
    """Marginals Q (K, H, W) of the dense CRF on image (H, W, 3) uint8 (numpy or tensor) and the
    classifier's log-probabilities (K, H, W) at the image's size."""
    k, h, w = log_probs.shape
    unary = softmax_unaries(log_probs.float().to(device)).reshape(k, h * w).t()  # (HW, K): the lattice's rows
    kernels = []
    for f, weight in _kernels(image, p):
        if weight:
            lattice = Lattice(f.to(device))
            kernels.append((lattice, weight, lattice.filter(unary.new_ones(h * w, 1)).clamp(min=1e-20).rsqrt()))
    q = torch.softmax(unary, 1)
    for _ in range(p.iterations):
        # Potts: a label gains its weight times its normalised, kernel-weighted share among the other pixels
        q = torch.softmax(unary + sum(weight * norm * lattice.filter(q * norm) for lattice, weight, norm in kernels), 1)
    return q.t().reshape(k, h, w)


def _kernels(image, p):
    """Each kernel's positions (divided by its stds) and weight: the Gaussian's, then the bilateral's."""
    bilateral = bilateral_features(image, p.bilateral_sxy, p.bilateral_srgb)
    return [(bilateral[:, :2] * (p.bilateral_sxy / p.gaussian_sxy), p.gaussian_weight),
            (bilateral, p.bilateral_weight)]


def naive_dense_crf(image, log_probs, p=CRFParams()):
    """The same mean field with every pixel pair's exact kernel value (the reference: N^2 memory)."""
    k, h, w = log_probs.shape
    unary = softmax_unaries(log_probs.double()).reshape(k, h * w)
    kernels = []
    for f, weight in _kernels(image, p):
        f = f.double()
        kern = torch.exp(-0.5 * torch.cdist(f, f) ** 2)
        n = kern.sum(1).rsqrt()
        kernels.append(weight * n[:, None] * kern * n[None, :])
    q = torch.softmax(unary, 0)
    for _ in range(p.iterations):
        q = torch.softmax(unary + sum(q @ kern for kern in kernels), 0)
    return q.reshape(k, h, w).float()
