"""Backbone + feature pyramid network giving L2-normalised pixel features.

As in PiCIE: an FPN with fusion dimension 128 (not 256) whose finest level
(stride 4, 320 px -> 80 x 80) is the per-pixel embedding, L2-normalised so
that cosine distances to centroids are well defined. A vision transformer
has one level, its patch tokens at stride p (8, 14, 16): its "FPN" is the one
1x1 lateral that projects them to the fusion dimension, and model.levels does
not apply.
"""
import contextlib
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.models.backbones import CONVNETS, IMAGENET_MEAN, IMAGENET_STD
from lib.models.vit import VITS, ViT

TRUNKS = {**CONVNETS, **{name: functools.partial(ViT, name) for name in VITS}}
STRIDE = 4  # of the convolutional backbones' FPN and of the raw-colour baseline


class FPN(nn.Module):
    """Top-down pathway with 1x1 lateral connections, as in the authors' FPN decoder.

    No 3x3 smoothing convolutions: at stride 4 a 128 -> 128 3x3 conv costs
    several times the whole EfficientNet trunk, and PiCIE's decoder has none.
    """

    def __init__(self, in_channels, dim):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)

    def forward(self, feats):
        top = self.lateral[-1](feats[-1])
        for i in reversed(range(len(feats) - 1)):
            lat = self.lateral[i](feats[i])
            top = lat + F.interpolate(top, size=lat.shape[-2:], mode="bilinear", align_corners=False)
        return top


def _channel_stats(in_chans):
    """ImageNet mean/std for RGB; extra channels (infrared) get the RGB average."""
    extra = in_chans - 3
    mean = IMAGENET_MEAN + (sum(IMAGENET_MEAN) / 3,) * extra
    std = IMAGENET_STD + (sum(IMAGENET_STD) / 3,) * extra
    return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)


class SegmentationNet(nn.Module):
    """Image in [0, 1] (B, C, H, W) -> unit-norm features (B, dim, H/s, W/s); C = 3, or 4 with IR; s the
    stride: 4, or a vision transformer's patch size."""

    def __init__(self, backbone="efficientnet_lite0", weights="imagenet", dim=128, levels=4, in_chans=3):
        super().__init__()
        self.backbone_name = backbone
        # dim: channels of the pixel embedding (embed); out_channels: of what forward gives (the same here)
        self.dim, self.levels, self.in_chans = dim, levels, in_chans
        self.out_channels = dim
        self.backbone = TRUNKS[backbone](weights, in_chans, levels)
        self.stride, self.frozen = self.backbone.stride, False
        self.fpn = FPN(self.backbone.channels[:levels], dim)
        mean, std = _channel_stats(in_chans)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def arch(self):
        return {"kind": "fpn", "backbone": self.backbone_name, "dim": self.dim, "levels": self.levels,
                "in_chans": self.in_chans}

    def freeze(self):
        """Train nothing of the backbone (model.freeze, or a method's rule): no gradient reaches it, it is
        computed without one, and its batch-norm statistics stay as loaded."""
        self.frozen = True
        self.backbone.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def trunk(self, x):
        """The backbone's levels of an image in [0, 1]."""
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            return self.backbone((x - self.mean) / self.std)[: self.levels]

    def embed(self, x, normalize=True):
        return self(x, normalize)

    def forward(self, x, normalize=True):
        """normalize=False: the FPN output before L2 normalisation (the probe's raw-feature variant)."""
        z = self.fpn(self.trunk(x))
        return F.normalize(z, dim=1) if normalize else z


class RawRGB(nn.Module):
    """The raw-RGB baseline: a pixel's 'feature' is its colour (and IR), averaged over the stride."""

    backbone_name = "rgb"
    stride = STRIDE

    def __init__(self, in_chans=3):
        super().__init__()
        self.dim = self.in_chans = self.out_channels = in_chans

    def arch(self):
        return {"kind": "rgb", "in_chans": self.in_chans}

    def embed(self, x, normalize=True):
        return self(x)

    def forward(self, x, normalize=True):
        return F.avg_pool2d(x, STRIDE)


def build_model(backbone, weights="", dim=128, levels=4, in_chans=3):
    if backbone == "rgb":
        return RawRGB(in_chans)
    return SegmentationNet(backbone, weights, dim, levels, in_chans)
