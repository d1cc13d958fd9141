"""Backbone + feature pyramid network giving L2-normalised stride-4 pixel features.

As in PiCIE: an FPN with fusion dimension 128 (not 256) whose finest level
(stride 4, 320 px -> 80 x 80) is the per-pixel embedding, L2-normalised so
that cosine distances to centroids are well defined.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.models.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD

STRIDE = 4


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


class SegmentationNet(nn.Module):
    """Image in [0, 1] (B, 3, H, W) -> unit-norm features (B, dim, H/4, W/4)."""

    def __init__(self, backbone="efficientnet_lite0", weights="imagenet", dim=128, levels=4):
        super().__init__()
        self.backbone_name = backbone
        self.dim, self.levels = dim, levels
        self.backbone = BACKBONES[backbone](weights)
        self.fpn = FPN(self.backbone.channels[:levels], dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        return F.normalize(self.fpn(self.backbone(x)[: self.levels]), dim=1)


class RawRGB(nn.Module):
    """The raw-RGB baseline: a pixel's 'feature' is its colour, averaged over the stride."""

    backbone_name = "rgb"
    dim = 3

    def forward(self, x):
        return F.avg_pool2d(x, STRIDE)


def build_model(backbone, weights="", dim=128, levels=4):
    if backbone == "rgb":
        return RawRGB()
    return SegmentationNet(backbone, weights, dim, levels)
