"""InfoSeg (Harb & Knoebelreiter, GCPR 2021): its network (Sec. 4.2), its two steps (Sec. 4.2-4.3)
and its Table 2 ablations. Random initialisation and the paper's lr and batch (Sec. 5.1).

The paper's Figure 3 is not in its text; what the text fixes, and the network follows:
- Block A turns the image into a grid of patch-wise features downsampled by
  d = 4 (here: a strided 3x3 stem and two stride-2 residual conv stages);
- local features L = Block C(A(x)), Block C being a residual block of
  pointwise (1x1) convolutions;
- image-level features = Block B(A(x)) (here: two stride-2 residual stages
  and global average pooling to 1 x 1), then their own Block C;
- each of the K global features H_k is a separate linear layer (Block D) of
  the image-level feature, P-dimensional like L (P = infoseg.dim).

Segmentation step: class probabilities V = softmax(tau <L_ij, H_k>) over k (Eq. 3),
the segmentation is argmax_k V (Eq. 4), which is what is scored. MI step:
S_ij = sum_k V_ijk H_k (Eq. 5), and the MI between L_ij and S_ij is bounded
with the discriminator T(x, y) = <x, y>: positives pair L and S of the same
image, negatives pair L of one image with S of every other image of the
batch (Eq. 8).
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.distributed import all_cat, own_rows, rows
from lib.loop import now, run_batches, use_amp
from lib.mi import dv_bound, iic_mutual_information, jsd_bound
from lib.transforms import resize
from lib.views import augment, forward_views

BOUNDS = {"jsd": jsd_bound, "dv": dv_bound}


def conv_bn(cin, cout, k=3, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ResidualStage(nn.Module):
    """Two 3x3 convolutions with a projected shortcut; stride 2 halves the resolution."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        # The shortcut's strided 1x1 convolution is computed as "keep every stride-th pixel, then a 1x1
        # convolution": the same function and weights, without oneDNN's channels-last 1x1 stride-2
        # backward-weights kernel, which in torch 2.14.1 on CPU corrupts the heap (or hangs with 2
        # threads) when the input has fewer than 8 channels (infoseg.width under 16).
        self.stride = stride
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x[:, :, ::self.stride, ::self.stride]))


class PointwiseResidual(nn.Module):
    """Block C: x + 1x1 conv(ReLU(1x1 conv(x))), then a 1x1 projection to the feature size P."""

    def __init__(self, cin, dim):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(cin, cin, 1), nn.ReLU(inplace=True), nn.Conv2d(cin, cin, 1))
        self.out = nn.Conv2d(cin, dim, 1)

    def forward(self, x):
        return self.out(torch.relu(x + self.block(x)))


class InfoSegNet(nn.Module):
    """Image (B, C, H, W) in [0, 1] -> local L (B, P, H/4, W/4) and global H (B, K, P).

    forward gives V (B, K, H/4, W/4), what is dumped and scored; embed gives L
    (P = dim channels), what the linear probe and re-training read.
    """

    backbone_name = "infoseg"

    def __init__(self, k, dim=1024, width=128, in_chans=3, tau=0.8):
        super().__init__()
        self.k, self.dim, self.width, self.in_chans, self.tau = k, dim, width, in_chans, tau
        self.out_channels = k
        self.stride = 4  # d, its downsampling (Sec. 4)
        self.block_a = nn.Sequential(conv_bn(in_chans, width // 2, 3, 2), ResidualStage(width // 2, width, 2),
                                     ResidualStage(width, width, 1))
        self.local = PointwiseResidual(width, dim)
        self.block_b = nn.Sequential(ResidualStage(width, 2 * width, 2), ResidualStage(2 * width, 2 * width, 2),
                                     nn.AdaptiveAvgPool2d(1))
        self.global_c = PointwiseResidual(2 * width, dim)
        self.heads = nn.ModuleList(nn.Linear(dim, dim) for _ in range(k))  # Block D, one per class

    def features(self, x):
        """Local L (B, P, H/4, W/4) and global H (B, K, P)."""
        a = self.block_a(x)
        local = self.local(a)
        g = self.global_c(self.block_b(a)).flatten(1)  # (B, P)
        return local, torch.stack([head(g) for head in self.heads], 1)

    def forward(self, x, normalize=True):
        """The class probabilities V (Eq. 3): what is scored, by argmax (Eq. 4)."""
        return probabilities(*self.features(x), self.tau)

    def embed(self, x, normalize=True):
        local = self.features(x)[0]
        return F.normalize(local, dim=1) if normalize else local

    def arch(self):
        return {"kind": "infoseg", "k": self.k, "dim": self.dim, "width": self.width, "in_chans": self.in_chans,
                "tau": self.tau}


def build(p, in_chans=3):
    return InfoSegNet(p.cluster.k, p.infoseg.dim, p.infoseg.width, in_chans, p.infoseg.tau)


def from_arch(arch):
    return InfoSegNet(arch["k"], arch["dim"], arch["width"], arch["in_chans"], arch["tau"])


def class_scores(local, glob):
    """<L_ij, H_k>: (B, P, U, V) x (B, K, P) -> (B, K, U, V)."""
    return torch.einsum("bpuv,bkp->bkuv", local, glob)


def probabilities(local, glob, tau):
    return torch.softmax(tau * class_scores(local, glob), 1)


def assignment(v, glob, hard=False):
    """S_ij = sum_k V_ijk H_k (soft, Eq. 5), or H of the argmax class (the 'hard' ablation)."""
    if hard:
        v = F.one_hot(v.argmax(1), v.shape[1]).permute(0, 3, 1, 2).to(glob.dtype)
    return torch.einsum("bkuv,bkp->bpuv", v, glob)


def pair_scores(local, s):
    """Discriminator scores of every (image b's L, image c's S) at every position: (B, B, U, V)."""
    return torch.einsum("bpuv,cpuv->bcuv", local, s)


def infoseg_loss(local, glob, tau, bound="jsd", hard=False):
    """-(MI bound of Eq. 6, averaged over positions); also returns V for the segmentation.

    Under torch.distributed, local and glob are this process's rows of the batch; the negatives are the
    S of every other image of the whole batch (gathered), as on one process. The JSD bound is a mean
    over positives and negatives, the same number per process, so the processes' mean is the batch's;
    DV's log-mean-exp of the negatives is taken per process."""
    v = probabilities(local, glob, tau)
    s = all_cat(assignment(v, glob, hard))
    if s.shape[0] < 2:
        raise ValueError("InfoSeg needs at least 2 images per batch: negatives come from other images")
    scores = pair_scores(local, s)  # (this process's images, every image, U, V)
    mine = torch.arange(s.shape[0], device=local.device)[rows(s.shape[0])]
    eye = mine[:, None] == torch.arange(s.shape[0], device=local.device)[None]
    positive, negative = scores[eye], scores[~eye]
    return -BOUNDS[bound](positive, negative), v


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    """One InfoSeg epoch: both steps on every batch (Sec. 4); no clustering pass, no augmentation.

    infoseg.objective: iic (Table 2) replaces the MI step by IIC's objective
    (iic.displacement) on the segmentation step's V of the two views of the batch.
    """
    t0 = time.perf_counter()
    amp = use_amp(p, device)

    def step(x, times):
        t = now(device)
        if p.infoseg.objective == "iic":
            views = augment(x, p, g)
            times["augment"] += now(device) - t
            v1, v2 = forward_views(model, *views, amp=amp, normalize=False)  # V of both views, G applied
            mi = iic_mutual_information(v1, v2, p.iic.displacement)
            return -mi, {"mi": mi.detach()}
        x = resize(own_rows(x)[0], p.data.res)  # this process's rows of the batch
        times["augment"] += now(device) - t
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            local, glob = model.features(x)
        loss, _ = infoseg_loss(local.float(), glob.float(), p.infoseg.tau, p.infoseg.bound,
                               p.infoseg.assignment == "hard")
        return loss, {}

    return run_batches(model, images, p, g, device, epoch, step, [optimizer], t0)


def describe(params):
    s = params["infoseg"]
    return [f"- model: InfoSeg's network (P {s['dim']}, width {s['width']}, random init), tau {s['tau']}, "
            f"bound `{s['bound']}`, assignment `{s['assignment']}`, objective `{s['objective']}`"]
