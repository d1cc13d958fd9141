"""The pixel-feature networks the methods share: a backbone + FPN (lib/models/fpn), or raw colour.

A method with a network of its own (IIC's heads, InfoSeg's network) defines
it in its module (lib/methods/) and rebuilds it from its `arch()` there.
"""
import torch

from lib.models.fpn import RawRGB, SegmentationNet, build_model
from lib.models.vit import VITS

__all__ = ["SegmentationNet", "RawRGB", "build_model", "feature_network", "network_from_arch", "describe",
           "channels_last", "freeze"]

SHARED_KINDS = ("fpn", "rgb")


def feature_network(p, in_chans=3, weights=None):
    """The backbone + FPN network of params p (model.*); `weights` overrides model.weights."""
    return build_model(p.model.backbone, p.model.weights if weights is None else weights, p.model.dim,
                       p.model.levels, in_chans)


def channels_last(model):
    """The network with its 4-d (convolution) weights stored channels-last (NHWC), as every network that
    trains or is scored here is: the same arithmetic, its results equal NCHW's to rounding, but oneDNN's
    CPU convolutions run faster on it (the default EfficientNet's depthwise ones most: bench/speed.py),
    as do CUDA's tensor cores. Inputs may stay NCHW: a convolution whose weight is channels-last computes
    in that layout, and its output, and so every later layer's, comes out in it."""
    return model.to(memory_format=torch.channels_last)


def freeze(model):
    """The model with the backbone of every feature network in it frozen (SegmentationNet.freeze)."""
    for m in model.modules():
        if isinstance(m, SegmentationNet):
            m.freeze()
    return model


def network_from_arch(arch):
    """Rebuild a shared network (random weights) from the `arch()` dict saved with it."""
    if arch["kind"] == "fpn":
        return SegmentationNet(arch["backbone"], "", arch["dim"], arch["levels"], arch["in_chans"])
    if arch["kind"] == "rgb":
        return RawRGB(arch["in_chans"])
    raise ValueError(f"network kind {arch['kind']!r} is not one of {', '.join(SHARED_KINDS)}")


def describe(params):
    """The report's line on the feature network of params (a dict)."""
    m = params["model"]
    if m["backbone"] in VITS:  # one level: its patch tokens, projected by the FPN's single 1x1 lateral
        net = f"`{m['backbone']}` patch tokens + 1x1 projection (dim {m['dim']}; model.levels does not apply)"
    else:
        net = f"`{m['backbone']}` + FPN (dim {m['dim']})"
    return f"- model: {net}, weights `{m['weights'] or 'random'}`, classifier `{m['classifier']}`"
