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


def _channel_stats(in_chans):
    """ImageNet mean/std for RGB; extra channels (infrared) get the RGB average."""
    extra = in_chans - 3
    mean = IMAGENET_MEAN + (sum(IMAGENET_MEAN) / 3,) * extra
    std = IMAGENET_STD + (sum(IMAGENET_STD) / 3,) * extra
    return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)


class SegmentationNet(nn.Module):
    """Image in [0, 1] (B, C, H, W) -> unit-norm features (B, dim, H/4, W/4); C = 3, or 4 with IR."""

    def __init__(self, backbone="efficientnet_lite0", weights="imagenet", dim=128, levels=4, in_chans=3):
        super().__init__()
        self.backbone_name = backbone
        # dim: channels of the pixel embedding (embed); out_channels: of what forward gives (the same here)
        self.dim, self.levels, self.in_chans = dim, levels, in_chans
        self.out_channels = dim
        self.backbone = BACKBONES[backbone](weights, in_chans, levels)
        self.fpn = FPN(self.backbone.channels[:levels], dim)
        mean, std = _channel_stats(in_chans)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def arch(self):
        return {"kind": "fpn", "backbone": self.backbone_name, "dim": self.dim, "levels": self.levels,
                "in_chans": self.in_chans}

    def embed(self, x, normalize=True):
        return self(x, normalize)

    def forward(self, x, normalize=True):
        """normalize=False: the FPN output before L2 normalisation (the probe's raw-feature variant)."""
        x = (x - self.mean) / self.std
        z = self.fpn(self.backbone(x)[: self.levels])
        return F.normalize(z, dim=1) if normalize else z


class RawRGB(nn.Module):
    """The raw-RGB baseline: a pixel's 'feature' is its colour (and IR), averaged over the stride."""

    backbone_name = "rgb"

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
