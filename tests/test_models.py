import copy

import numpy as np
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F
import torchvision

from lib import methods
from lib.checkpoint import load_model, save_model
from lib.models import build_model, channels_last
from lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD, ResNet18, WeightsError, efficientnet_lite0_state_dict
from tests.conftest import tiny_params


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_network_shapes_norm_and_gradients(backbone):
    torch.manual_seed(0)
    model = build_model(backbone, weights="", dim=16)
    x = torch.rand(2, 3, 64, 64)
    z = model(x)
    assert z.shape == (2, 16, 16, 16)
    assert torch.isfinite(z).all()
    assert torch.allclose(z.norm(dim=1), torch.ones(2, 16, 16), atol=1e-5)
    (z * torch.randn_like(z)).sum().backward()
    missing = [n for n, q in model.named_parameters() if q.grad is None or not torch.isfinite(q.grad).all()]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("backbone,weights", [("efficientnet_lite0", "imagenet"), ("resnet18", "")])
def test_channels_last_network_computes_what_the_nchw_one_does(backbone, weights):
    """Networks train and are scored channels-last (lib/models.channels_last): a layout, not another
    computation. Outputs equal NCHW's to rounding and come out NHWC; the gradients differ by float32
    rounding only, which NHWC's batch-norm kernels accumulate less exactly (measured against a float64
    network: ~0.4 % against NCHW's ~0.02 % for EfficientNet, far below the minibatch's own noise)."""
    torch.manual_seed(0)
    nchw = build_model(backbone, weights=weights, dim=16).train()
    nhwc = channels_last(copy.deepcopy(nchw))
    x = torch.rand(4, 3, 64, 64)
    outs = []
    for net in (nchw, nhwc):
        z = net(x)
        (z * torch.linspace(-1, 1, z.numel()).view_as(z)).sum().backward()
        outs.append((z, torch.cat([q.grad.flatten() for q in net.parameters()])))
    (z0, g0), (z1, g1) = outs
    assert z1.is_contiguous(memory_format=torch.channels_last) and not z0.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(z0, z1, atol=1e-4)
    assert ((g1 - g0).norm() / g0.norm()).item() < 1e-2


@pytest.mark.parametrize("method", methods.NAMES)
def test_every_network_built_or_loaded_is_channels_last(tmp_path, method):
    p, _ = tiny_params(tmp_path, method=method, **{"model.weights": ""})
    net = methods.build(p)
    convs = [w for w in net.parameters() if w.dim() == 4]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    save_model(net, tmp_path / "m.pt", {})
    loaded, _ = load_model(tmp_path / "m.pt")
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in loaded.parameters() if w.dim() == 4)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(net.eval()(x), loaded(x))


def test_rgb_baseline_is_pooled_colour():
    x = torch.rand(1, 3, 8, 8)
    z = build_model("rgb")(x)
    assert z.shape == (1, 3, 2, 2)
    assert torch.allclose(z[0, :, 0, 0], x[0, :, :4, :4].mean((1, 2)))


def _imagenet_input(name):
    im = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None] / 255
    im = F.interpolate(im, size=(224, 224), mode="bilinear", antialias=True)
    return (im - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_efficientnet_lite0_imagenet_weights_are_loaded_right():
    """The bundled weights, mapped to timm's keys, classify real photos correctly."""
    sd = efficientnet_lite0_state_dict()
    net = timm.create_model("efficientnet_lite0", pretrained=False)
    net.load_state_dict(sd)
    net.eval()
    with torch.no_grad():
        cat = net(_imagenet_input("chelsea")).softmax(-1)[0]
        coffee = net(_imagenet_input("coffee")).softmax(-1)[0]
    assert int(cat.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert cat[[281, 282, 285]].sum() > 0.8
    assert int(coffee.argmax()) == 967 and coffee[967] > 0.5  # espresso
    # and the segmentation backbone carries exactly these weights
    seg = build_model("efficientnet_lite0", weights="imagenet", dim=8)
    assert torch.equal(seg.backbone.net.conv_stem.weight, sd["conv_stem.weight"])
    assert torch.equal(seg.backbone.net.blocks[6][0].conv_pwl.weight, sd["blocks.6.0.conv_pwl.weight"])


def test_resnet18_weights_from_a_torchvision_state_dict(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    net = ResNet18(str(path))
    assert torch.equal(net.stem[0].weight, ref.conv1.weight)
    assert torch.equal(net.layers[3][1].conv2.weight, ref.layer4[1].conv2.weight)


def test_bad_weights_give_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="file not found: .*nope.pth"):
        build_model("resnet18", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="cannot be downloaded"):
        build_model("resnet18", weights="imagenet")
    other = tmp_path / "other.pth"
    torch.save({"foo": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="not a torchvision ResNet-18"):
        build_model("resnet18", weights=str(other))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError, match="cannot read"):
        build_model("resnet18", weights=str(junk))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_four_channel_input_at_a_side_not_divisible_by_32(backbone):
    """Potsdam: R, G, B, IR at 200 px (stride-32 maps of 6.25 px are rounded by the FPN)."""
    torch.manual_seed(0)
    model = build_model(backbone, weights="", dim=8, in_chans=4)
    z = model(torch.rand(2, 4, 200, 200))
    assert z.shape == (2, 8, 50, 50) and torch.isfinite(z).all()
    z.sum().backward()
    assert all(q.grad is not None for q in model.parameters())
    assert build_model("rgb", in_chans=4)(torch.rand(1, 4, 8, 8)).shape == (1, 4, 2, 2)


def test_imagenet_stem_widened_for_infrared_keeps_rgb_filters_shape():
    """The 4-channel stem is timm's adaptation of the real RGB filters, not a random one."""
    rgb = efficientnet_lite0_state_dict()["conv_stem.weight"]
    model = build_model("efficientnet_lite0", weights="imagenet", dim=8, in_chans=4)
    stem = model.backbone.net.conv_stem.weight.detach()
    assert stem.shape == (32, 4, 3, 3)
    assert torch.allclose(stem[:, :3], rgb * 3 / 4) and torch.allclose(stem[:, 3], rgb[:, 0] * 3 / 4)


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_fewer_levels_build_a_shorter_trunk_whose_every_parameter_learns(backbone):
    """model.levels: 2 with resnet18 is IIC-res12: only the first two residual blocks exist."""
    torch.manual_seed(0)
    full, short = build_model(backbone, "", dim=8), build_model(backbone, "", dim=8, levels=2)
    assert sum(q.numel() for q in short.parameters()) < sum(q.numel() for q in full.parameters()) / 2
    z = short(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 8, 16, 16)
    z.sum().backward()
    assert all(q.grad is not None for q in short.parameters())
    if backbone == "resnet18":
        assert len(short.backbone.layers) == 2
