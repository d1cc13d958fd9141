"""Vision-transformer backbones: the official DINO / DINOv2 release layouts load and give the features of
the network they came from; a wrong file is one line; strides, `auto` sides and frozen trunks."""
import re

import pytest
import torch

from lib.config import BACKBONES, ParamsError
from lib.errors import WeightsError
from lib.models import build_model, freeze
from lib.models.vit import VITS, ViT
from tests.conftest import tiny_params


def _official_keys(depth, layer_scale):
    """The tensors of DINO's vision_transformer.py (and DINOv2's, with LayerScale), transcribed from their
    module names, not from timm: a release file has exactly these (DINOv2's adds mask_token)."""
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(depth):
        parts = ["norm1", "attn.qkv", "attn.proj"] + (["ls1"] if layer_scale else []) + \
            ["norm2", "mlp.fc1", "mlp.fc2"] + (["ls2"] if layer_scale else [])
        for part in parts:
            keys += [f"blocks.{i}.{part}.gamma"] if part.startswith("ls") else \
                [f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"]
    return keys + ["norm.weight", "norm.bias"]


@pytest.mark.parametrize("name, side, layer_scale", [("dino_vits8", 32, False), ("dinov2_vits14", 28, True)])
def test_a_release_file_in_the_official_layout_loads_and_gives_the_same_features(tmp_path, name, side, layer_scale):
    torch.manual_seed(0)
    source = ViT(name).eval()
    sd = source.net.state_dict()
    assert sorted(sd) == sorted(_official_keys(12, layer_scale))  # timm's names are the release files'
    if layer_scale:
        sd["mask_token"] = torch.zeros(1, 384)  # DINOv2's, used in its training only
    torch.save(sd, tmp_path / "release.pth")
    torch.manual_seed(1)
    loaded = ViT(name, str(tmp_path / "release.pth")).eval()
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        (a,), (b,) = source(x), loaded(x)
    assert a.shape == (2, 384, side // source.stride, side // source.stride)
    assert torch.equal(a, b)
    fresh = ViT(name).eval()  # and the comparison can fail: another initialisation gives other features
    with torch.no_grad():
        assert not torch.allclose(fresh(x)[0], a)


def test_a_dino_training_checkpoint_loads_its_teacher(tmp_path):
    torch.manual_seed(0)
    source = ViT("dino_vits16").eval()
    teacher = {f"module.backbone.{k}": v for k, v in source.net.state_dict().items()}
    teacher["module.head.last_layer.weight_g"] = torch.ones(1)
    torch.save({"teacher": teacher, "student": {}, "epoch": 100}, tmp_path / "checkpoint.pth")
    loaded = ViT("dino_vits16", str(tmp_path / "checkpoint.pth")).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(x)[0], loaded(x)[0])


def test_a_truncated_foreign_or_mismatched_file_is_one_line_naming_it(tmp_path):
    torch.manual_seed(0)
    torch.save(ViT("dino_vits8").net.state_dict(), tmp_path / "vits8.pth")
    data = (tmp_path / "vits8.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=f"cannot read {tmp_path / 'truncated.pth'} as a PyTorch state dict"):
        ViT("dino_vits8", str(tmp_path / "truncated.pth"))
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=rf"{tmp_path / 'resnet.pth'} is not a dino_vits8 state dict "
                                           rf"\(dino_deitsmall8_pretrain.pth's layout\): 150 of its 150 tensors "
                                           rf"missing, e\.g\. cls_token"):
        ViT("dino_vits8", str(tmp_path / "resnet.pth"))
    with pytest.raises(WeightsError, match=r"vits8.pth is not a dino_vits16 state dict: its patch_embed.proj.weight "
                                           r"is \(384, 3, 8, 8\), dino_vits16's is \(384, 3, 16, 16\)"):
        ViT("dino_vits16", str(tmp_path / "vits8.pth"))
    with pytest.raises(WeightsError, match="no weights can be downloaded for dino_vits8 here; give the path of its "
                                           "release file \\(dino_deitsmall8_pretrain.pth\\)"):
        ViT("dino_vits8", "imagenet")


def test_every_backbone_of_config_is_a_network_of_that_stride():
    assert set(BACKBONES) == set(VITS) | {"efficientnet_lite0", "resnet18", "rgb"}
    for name, (arch, _) in VITS.items():  # timm's architecture names carry the patch
        assert BACKBONES[name] == int(re.search(r"patch(\d+)", arch).group(1)), name
    torch.manual_seed(0)
    for name in ("dino_vits8", "dinov2_vits14", "efficientnet_lite0"):
        net = build_model(name, weights="", dim=16)
        side = 4 * BACKBONES[name] * 2 if name != "efficientnet_lite0" else 64
        z = net(torch.rand(1, 3, side, side))
        assert net.stride == BACKBONES[name] and z.shape == (1, 16, side // net.stride, side // net.stride)


def test_auto_sides_are_rounded_to_the_patch_and_others_refused_with_the_nearest(tmp_path):
    p, _ = tiny_params(tmp_path, **{"model.backbone": "dinov2_vits14"})
    assert p.data.res == 126 and p.data.train_res == 126  # the embedded protocol's 128, to 9 patches
    p, _ = tiny_params(tmp_path, **{"model.backbone": "dinov2_vits14", "data.name": "cocostuff27", "data.root": "/x"})
    assert (p.data.res, p.data.train_res) == (322, 644)  # COCO's 320 is 23 patches of 14
    p, _ = tiny_params(tmp_path, **{"model.backbone": "dino_vits8"})
    assert p.data.res == 128
    with pytest.raises(ParamsError, match=r"'data.res' must be a multiple of the feature stride \(14 for "
                                          r"dinov2_vits14\), got 128: 126 or 140"):
        tiny_params(tmp_path, **{"model.backbone": "dinov2_vits14", "data.res": 128})


def test_a_frozen_trunk_gets_no_gradient_and_keeps_its_statistics(tmp_path):
    torch.manual_seed(0)
    net = freeze(build_model("efficientnet_lite0", weights="", dim=8)).train()
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    z = net(torch.rand(2, 3, 64, 64))
    (z * torch.randn_like(z)).sum().backward()
    assert all(q.grad is None for q in net.backbone.parameters())
    assert all(q.grad is not None for q in net.fpn.parameters())  # the rest trains
    assert all(torch.equal(v, before[k]) for k, v in net.backbone.state_dict().items())  # batch-norm included
    with pytest.raises(ParamsError, match="'model.freeze' is true but method 'infoseg' trains a network of its own"):
        tiny_params(tmp_path, method="infoseg", **{"model.freeze": True})
