"""InfoSeg's feature network (Harb & Knoebelreiter, GCPR 2021, Sec. 4.2 and Fig. 3).

The paper's Figure 3 is not in its text; what the text fixes, and this
network follows:
- Block A turns the image into a grid of patch-wise features downsampled by
  d = 4 (here: a strided 3x3 stem and two stride-2 residual conv stages);
- local features L = Block C(A(x)), Block C being a residual block of
  pointwise (1x1) convolutions;
- image-level features = Block B(A(x)) (here: two stride-2 residual stages
  and global average pooling to 1 x 1), then their own Block C;
- each of the K global features H_k is a separate linear layer (Block D) of
  the image-level feature, P-dimensional like L.
Random initialisation, as in the paper.
"""
import torch
import torch.nn as nn


def conv_bn(cin, cout, k=3, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ResidualStage(nn.Module):
    """Two 3x3 convolutions with a projected shortcut; stride 2 halves the resolution."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class PointwiseResidual(nn.Module):
    """Block C: x + 1x1 conv(ReLU(1x1 conv(x))), then a 1x1 projection to the feature size P."""

    def __init__(self, cin, dim):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(cin, cin, 1), nn.ReLU(inplace=True), nn.Conv2d(cin, cin, 1))
        self.out = nn.Conv2d(cin, dim, 1)

    def forward(self, x):
        return self.out(torch.relu(x + self.block(x)))


class InfoSegNet(nn.Module):
    """Image (B, C, H, W) in [0, 1] -> local L (B, P, H/4, W/4) and global H (B, K, P)."""

    backbone_name = "infoseg"
    scoring = "argmax"  # Eq. 4: the class of largest probability

    def __init__(self, k, dim=1024, width=128, in_chans=3, tau=0.8):
        super().__init__()
        # dim: what forward gives per pixel (V, K classes); embed_dim: P, the local features
        self.k, self.dim, self.embed_dim, self.width, self.in_chans, self.tau = k, k, dim, width, in_chans, tau
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
        local, glob = self.features(x)
        return torch.softmax(self.tau * torch.einsum("bpuv,bkp->bkuv", local, glob), 1)

    def embed(self, x, normalize=True):
        local = self.features(x)[0]
        return nn.functional.normalize(local, dim=1) if normalize else local

    def arch(self):
        return {"kind": "infoseg", "k": self.k, "dim": self.embed_dim, "width": self.width, "in_chans": self.in_chans,
                "tau": self.tau}
