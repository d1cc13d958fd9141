"""STEGO (Hamilton et al., ICLR 2022): a segmentation head trained on a frozen backbone by distilling the
backbone's feature correspondences into a low-dimensional code.

f, the frozen features: a vision transformer's patch tokens (lib/models/vit.py), or for a convolutional
backbone its levels fused by the FPN as initialised (what `notrain` clusters), so that "STEGO beats
k-means on its own frozen backbone" compares the two on the same features. The head maps f (B, D, h, w)
to the code s (B, stego.dim, h, w): a 1x1 linear branch plus a 1x1-ReLU-1x1 branch, summed, with
dropout on f while training (STEGO's `nonlinear` projection).

The loss, for two images a, b at stego.samples x stego.samples random positions of each:

    F(i, j) = cos(f_a(i), f_b(j)), spatially centred: minus its mean over b's positions j (then the
              mean of F over all pairs added back, as STEGO's `pointwise` option)
    S(i, j) = cos(s_a(i), s_b(j))
    L(a, b; shift) = -mean over i, j of (F(i, j) - shift) * clamp(S(i, j), 0[, 0.8])

so codes of positions whose features correspond more than `shift` are pulled together and the others
pushed apart; the upper clamp at 0.8 is STEGO's `stabalize` option (stego.stabilize), which leaves a pair
whose codes are already that alike alone (its gradient is 0 there). Each training image is paired with
itself (stego.self_weight, stego.self_shift), with one of its stego.knn nearest neighbours by global
feature (stego.knn_weight, stego.knn_shift; the `knn` stage computes them once), and with stego.negatives
random other images of the batch (stego.rand_weight, stego.rand_shift). `stego.pairs: random` draws the
second image at random instead of among the neighbours: the ablation of the neighbours.

Training images are STEGO's five crops of each image (its four corners and its centre, each a
stego.crop_ratio of the side), seen at data.res. Alongside, on the detached code: the cluster probe, K
learned centroids on the unit sphere, each pixel assigned to its nearest by cosine (loss: minus the mean
of that cosine), and, where the training split has labels, a linear probe; both at stego.probe_lr. The
cluster probe is the classifier the run is scored by: forward gives its cosines, the dump holds them and
the evaluate stage takes their argmax, as for IIC.
"""
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.data.base import IGNORE
from lib.distributed import own_rows
from lib.errors import DataError, ParamsError
from lib.features import to_tensor
from lib.loop import run_batches, use_amp
from lib.models import SegmentationNet, describe as describe_network, feature_network, network_from_arch
from lib.models.vit import ViT
from lib.transforms import resize

CLAMP = 0.8  # STEGO's `stabalize` (stego.stabilize): code correlations above it are not rewarded further


class StegoNet(nn.Module):
    """A frozen feature network, STEGO's head to a code, and the probes trained on the code."""

    def __init__(self, net, dim, k, dropout=0.1):
        super().__init__()
        if not isinstance(net, SegmentationNet):
            raise ParamsError(f"method 'stego' distills a backbone's features; model.backbone '{net.backbone_name}' "
                              "has none")
        self.net = net.requires_grad_(False)  # frozen, head to toe: the features f STEGO distills
        self.vit = isinstance(net.backbone, ViT)
        d = net.backbone.channels[0] if self.vit else net.dim
        self.linear = nn.Conv2d(d, dim, 1)
        self.nonlinear = nn.Sequential(nn.Conv2d(d, d, 1), nn.ReLU(), nn.Conv2d(d, dim, 1))
        self.dropout = nn.Dropout2d(dropout)
        self.clusters = nn.Parameter(torch.randn(k, dim))  # the cluster probe's centroids
        self.probe = nn.Conv2d(dim, k, 1)  # the linear probe, on labels where there are any
        self.k, self.dim, self.feature_dim = k, dim, d
        self.out_channels, self.in_chans, self.stride = k, net.in_chans, net.stride
        self.backbone_name = net.backbone_name

    def arch(self):
        return {"kind": "stego", "net": self.net.arch(), "dim": self.dim, "k": self.k}

    def train(self, mode=True):
        super().train(mode)
        self.net.eval()  # frozen: its batch-norm statistics stay as loaded
        return self

    @torch.no_grad()
    def features(self, x):
        """f (B, D, h, w): the frozen features."""
        self.net.eval()
        return self.features_from(self.net.trunk(x))

    @torch.no_grad()
    def features_from(self, levels):
        """f from the frozen trunk's levels (its own, or the frozen stage's cache of them): a vision
        transformer's patch tokens, or the levels fused by the FPN as initialised, L2-normalised."""
        return levels[0] if self.vit else F.normalize(self.net.fpn(levels), dim=1)

    def forward_levels(self, levels):
        """forward() of an image whose trunk levels are given (the dump, from the cache)."""
        return self.scores(self.features_from(levels))

    def scores(self, f):
        """The cluster probe's cosines of the codes of frozen features f."""
        return cluster_scores(F.normalize(self.code(f), dim=1), self.clusters)

    def code(self, f):
        f = self.dropout(f)
        return self.linear(f) + self.nonlinear(f)

    def embed(self, x, normalize=True):
        s = self.code(self.features(x))
        return F.normalize(s, dim=1) if normalize else s

    def forward(self, x, normalize=True):
        """The cluster probe's cosine of each pixel's code to each centroid (B, K, h, w)."""
        return self.scores(self.features(x))


def cluster_scores(code, clusters):
    return torch.einsum("bchw,kc->bkhw", F.normalize(code, dim=1), F.normalize(clusters, dim=1))


def build(p, in_chans=3):
    return StegoNet(feature_network(p, in_chans), p.stego.dim, p.cluster.k)


def from_arch(arch):
    return StegoNet(network_from_arch(arch["net"]), arch["dim"], arch["k"])


def correspondence_loss(f1, f2, s1, s2, shift, stabilize=True):
    """STEGO's loss between the sampled positions of two images: f (B, D, n, m) features, s (B, C, n, m)
    codes; -mean((F - shift) * clamp(S, 0[, 0.8])) with F the features' cosines centred over the second
    image's positions; the upper clamp where `stabilize`."""
    with torch.no_grad():
        fd = torch.einsum("bdij,bdkl->bijkl", F.normalize(f1, dim=1), F.normalize(f2, dim=1))
        fd = fd - fd.mean(dim=(3, 4), keepdim=True) + fd.mean()
    sd = torch.einsum("bcij,bckl->bijkl", F.normalize(s1, dim=1), F.normalize(s2, dim=1))
    return -((fd - shift) * sd.clamp(0, CLAMP if stabilize else None)).mean()


def sample(t, coords):
    """t (B, C, H, W) at coords (B, n, m, 2) in [-1, 1] (x, y), bilinear: (B, C, n, m)."""
    return F.grid_sample(t, coords, mode="bilinear", padding_mode="border", align_corners=True)


def derangement(n, g):
    """A random permutation of range(n) that moves every index (a negative is another image)."""
    perm = torch.randperm(n, generator=g)
    return torch.where(perm == torch.arange(n), (perm + 1) % n, perm)


def stego_loss(f, s, f_pair, s_pair, p, g):
    """The weighted self, neighbour and random pairs' losses of a batch; its parts for the curves."""
    n = p.stego.samples
    shape = (len(f), n, n, 2)
    c1, c2 = (torch.rand(shape, generator=g).to(f.device) * 2 - 1 for _ in range(2))
    f1, s1 = sample(f, c1), sample(s, c1)
    f2, s2 = sample(f_pair, c2), sample(s_pair, c2)
    up = p.stego.stabilize
    own = correspondence_loss(f1, f1, s1, s1, p.stego.self_shift, up)
    pair = correspondence_loss(f1, f2, s1, s2, p.stego.knn_shift, up)
    # negatives: each crop against another crop of the batch, as STEGO draws them (at the pair's positions)
    perms = [derangement(len(f), g) for _ in range(p.stego.negatives)]
    rand = torch.stack([correspondence_loss(f1, sample(f[perm], c2), s1, sample(s[perm], c2), p.stego.rand_shift, up)
                        for perm in perms]).mean()
    total = p.stego.self_weight * own + p.stego.knn_weight * pair + p.stego.rand_weight * rand
    return total, {"self": own.detach(), "knn": pair.detach(), "rand": rand.detach()}


def probe_losses(model, s, labels):
    """The cluster probe's loss (minus each pixel's cosine to its nearest centroid) and the linear probe's
    cross-entropy on the labels (0 without them), both on the detached code."""
    s = s.detach()
    cluster = -cluster_scores(s, model.clusters).max(dim=1).values.mean()
    if labels is None:
        return cluster, torch.zeros((), device=s.device)
    logits = F.interpolate(model.probe(s), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    known = labels < model.k  # 255 is ignored, and so is a class beyond cluster.k (K outputs: STEGO's n_classes)
    linear = F.cross_entropy(logits.permute(0, 2, 3, 1)[known], labels[known].long()) if known.any() else \
        logits.sum() * 0
    return cluster, linear


class FiveCrops:
    """The five crops of each training image (four corners, centre; a `ratio` of the side): crop c of
    image c // 5. Indexing with an array of crop ids reads those crops (uint8, (B, side, side, C))."""

    def __init__(self, images, ratio, labels=None):
        self.images, self.labels = images, labels
        full = images.shape[1]
        self.side = max(1, round(full * ratio))
        far = full - self.side
        self.corners = [(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)]

    def __len__(self):
        return 5 * len(self.images)

    def _crop(self, array, c):
        y, x = self.corners[c % 5]
        return array[c // 5, y:y + self.side, x:x + self.side]

    def __getitem__(self, ids):
        return np.stack([self._crop(self.images, c) for c in ids])

    def crop_labels(self, ids):
        return None if self.labels is None else np.stack([self._crop(self.labels, c) for c in ids])


def train_one_epoch(model, images, optimizer, p, g, device, epoch, labels=None, neighbours=None, frozen=None):
    """One STEGO epoch over the five crops of the training images. `neighbours`: (5N, stego.knn) crop ids,
    the knn stage's nearest neighbours of each crop; `labels`: the training labels, for the linear probe;
    `frozen`: the frozen stage's cache of the crops' trunk levels (lib/frozen.Cache), read instead of
    running the trunk (None: the trunk runs on every step, as STEGO's code does)."""
    t0 = time.perf_counter()
    amp = use_amp(p, device)
    crops = FiveCrops(images, p.stego.crop_ratio, labels)
    if p.stego.pairs == "knn" and (neighbours is None or len(neighbours) != len(crops)):
        raise DataError(f"stego.pairs: knn needs the knn stage's neighbours of the {len(crops)} training crops "
                        f"(got {0 if neighbours is None else len(neighbours)}); run `dvc repro knn`")

    def read(ids):  # the crops, their partners (a neighbour, or a random crop) and their labels
        if p.stego.pairs == "knn":
            pick = torch.randint(neighbours.shape[1], (len(ids),), generator=g).numpy()
            partner = neighbours[ids, pick]
        else:  # a random crop
            partner = torch.randint(len(crops), (len(ids),), generator=g).numpy()
        lab = crops.crop_labels(ids)
        lab = None if lab is None else torch.from_numpy(lab).to(device)
        if frozen is not None:  # the cached trunk levels of the crops and their partners
            return frozen.levels(ids, device), frozen.levels(partner, device), lab
        x = resize(to_tensor(crops[ids], device), p.data.res)
        x_pair = resize(to_tensor(crops[partner], device), p.data.res)
        return x, x_pair, lab

    features = model.features if frozen is None else model.features_from  # of images, or of cached levels

    def own(t):  # this process's rows of a batch's tensor, or of each of its cached levels
        return [own(level) for level in t] if isinstance(t, list) else own_rows(t)[0]

    def step(batch, times):
        x, x_pair, lab = (own(t) for t in batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            f, f_pair = features(x), features(x_pair)
            s, s_pair = model.code(f), model.code(f_pair)
        f, f_pair, s, s_pair = (t.float() for t in (f, f_pair, s, s_pair))
        distill, parts = stego_loss(f, s, f_pair, s_pair, p, g)
        cluster, linear = probe_losses(model, s, lab)
        parts.update(cluster=cluster.detach(), linear=linear.detach())
        return distill + cluster + linear, parts

    return run_batches(model, crops, p, g, device, epoch, step, [optimizer], t0, read=read)


def param_groups(model, p):
    """The head at train.lr, the probes at stego.probe_lr (STEGO's separate optimisers)."""
    probes = [model.clusters, *model.probe.parameters()]
    head = [q for q in model.parameters() if q.requires_grad and all(q is not r for r in probes)]
    return [{"params": head}, {"params": probes, "lr": p.stego.probe_lr}]


def frozen_sources(prepared, p):
    """What the frozen stage caches the trunk's levels of: the five crops of the training images (in crop
    order, as train_one_epoch and neighbours read them) and the validation images."""
    return {"train": FiveCrops(prepared.images("train"), p.stego.crop_ratio), "val": prepared.images("val")}


@torch.no_grad()
def neighbours(model, images, p, device, frozen=None):
    """(5N, stego.knn) crop ids: each five-crop's nearest other crops by the backbone's global feature (its
    deepest level, mean-pooled and L2-normalised, as STEGO's: what an ImageNet classifier would read). The
    knn stage computes them once, from the frozen stage's cache of the crops' trunk levels where there is
    one (`frozen`); they depend on the data, the backbone and its weights, not on the seed."""
    crops = FiveCrops(images, p.stego.crop_ratio)
    model.eval()
    glob = []
    bs = p.runtime.inference_batch
    for i in range(0, len(crops), bs):
        ids = np.arange(i, min(i + bs, len(crops)))
        deepest = frozen.levels(ids, device)[-1] if frozen is not None else \
            model.net.trunk(resize(to_tensor(crops[ids], device), p.data.res))[-1]
        glob.append(F.normalize(deepest.float().mean(dim=(2, 3)), dim=1).cpu())
    glob = torch.cat(glob)
    k = min(p.stego.knn, len(glob) - 1)
    out = []
    for i in range(0, len(glob), 1024):  # bounded memory: 1024 rows of similarities at a time
        sims = glob[i:i + 1024] @ glob.T
        sims[torch.arange(len(sims)), torch.arange(i, i + len(sims))] = -2  # a crop is not its own neighbour
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out).numpy().astype(np.int32)


def describe(params):
    s, k = params["stego"], params["cluster"]["k"]
    pairs = f"one of its {s['knn']} nearest neighbours" if s["pairs"] == "knn" else "a random crop"
    return [describe_network(params),
            f"- STEGO: the backbone frozen, a code of dim `{s['dim']}` trained on five-crops of side "
            f"{s['crop_ratio']}; each crop paired with itself (weight {s['self_weight']}, shift "
            f"{s['self_shift']}), with {pairs} ({s['knn_weight']}, {s['knn_shift']}) and with {s['negatives']} "
            f"random others ({s['rand_weight']}, {s['rand_shift']}); the codes' correlations clamped to "
            f"{'[0, 0.8]' if s['stabilize'] else '0 and above'}; scored by its cluster probe (K `{k}`)"]
