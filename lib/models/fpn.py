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
    def __init__(self, in_channels, dim):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        # Panoptic-FPN style fusion: every level is brought to stride 4 and summed,
        # so coarse (semantic) and fine (boundary) levels both reach each pixel.
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
            for _ in in_channels
        )
        self.head = nn.Conv2d(dim, dim, 1)

    def forward(self, feats):
        top = None
        fused = 0
        for i in reversed(range(len(feats))):
            lat = self.lateral[i](feats[i])
            top = lat if top is None else lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            level = self.smooth[i](top)
            fused = fused + F.interpolate(level, size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
        return self.head(fused)


class SegmentationNet(nn.Module):
    """Image in [0, 1] (B, 3, H, W) -> unit-norm features (B, dim, H/4, W/4)."""

    def __init__(self, backbone="efficientnet_lite0", weights="imagenet", dim=128):
        super().__init__()
        self.backbone_name = backbone
        self.dim = dim
        self.backbone = BACKBONES[backbone](weights)
        self.fpn = FPN(self.backbone.channels, dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        return F.normalize(self.fpn(self.backbone(x)), dim=1)


class RawRGB(nn.Module):
    """The raw-RGB baseline: a pixel's 'feature' is its colour, averaged over the stride."""

    backbone_name = "rgb"
    dim = 3

    def forward(self, x):
        return F.avg_pool2d(x, STRIDE)


def build_model(backbone, weights="", dim=128):
    if backbone == "rgb":
        return RawRGB()
    return SegmentationNet(backbone, weights, dim)
