"""STEGO: its correspondence loss on hand-built feature maps (with and without its upper clamp), its five crops
and neighbours, and a frozen trunk that no gradient reaches."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import methods
from lib.data.textures import make_split
from lib.features import to_tensor
from lib.methods.stego import FiveCrops, correspondence_loss, neighbours, probe_losses, stego_loss
from tests.conftest import tiny_params

TINY = {"method": "stego", "data.res": 32, "model.weights": "", "model.dim": 8, "stego.dim": 6, "stego.samples": 3,
        "stego.knn": 2, "stego.negatives": 2, "train.batch_size": 4}


def test_the_loss_is_the_hand_computed_one():
    # two positions in each of two images: features (D = 2) and codes (C = 2), as (B, D, 1, 2) maps
    f1 = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # unit vectors e1, e2
    f2 = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]])  # (1, 0) and (1, 1)
    s1 = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]])  # (1, 0), (1, 1)
    s2 = torch.tensor([[[[1.0, 0.0]], [[0.0, -1.0]]]])  # (1, 0), (0, -1)
    r = 2 ** -0.5
    F_ = torch.tensor([[1.0, r], [0.0, r]])  # cos(f1_i, f2_j): rows i of image 1, columns j of image 2
    F_ = F_ - F_.mean(dim=1, keepdim=True) + F_.mean()  # centred over j, the overall mean kept
    S = torch.tensor([[1.0, 0.0], [r, -r]]).clamp(0, 0.8)  # cos(s1_i, s2_j), clamped to [0, 0.8]
    shift = 0.1
    expected = -((F_ - shift) * S).mean()
    assert torch.allclose(correspondence_loss(f1, f2, s1, s2, shift), expected)


def _pulled(f, shift, steps=60):
    """Codes of 4 positions trained under the loss of an image with itself; their mean pairwise cosine."""
    torch.manual_seed(0)
    s = torch.rand(1, 8, 1, 4, requires_grad=True)  # positive: every pair starts where the clamp lets it move
    opt = torch.optim.SGD([s], lr=0.5)
    first = None
    for _ in range(steps):
        loss = correspondence_loss(f, f, s, s, shift)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = F.normalize(s.detach()[0, :, 0], dim=0)  # (C, 4)
    cos = z.T @ z
    return first, loss.item(), cos[~torch.eye(4, dtype=bool)].mean().item(), cos


def test_positions_with_equal_features_are_pulled_together_and_unlike_ones_pushed_apart():
    equal = torch.ones(1, 2, 1, 4)  # every position has the same feature: F = 1 everywhere
    first, last, mean_cos, _ = _pulled(equal, shift=0.0)
    assert last < first and mean_cos > 0.79  # the codes' cosines rise to the clamp
    # two groups of positions with orthogonal features: pulled within a group, pushed apart across
    groups = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 1.0]]]])
    first, last, _, cos = _pulled(groups, shift=0.3)
    assert last < first
    assert cos[0, 1] > 0.79 and cos[2, 3] > 0.79 and cos[0, 2] < 0.05 and cos[1, 3] < 0.05


def test_negative_pairs_push_codes_apart():
    torch.manual_seed(0)
    f = torch.ones(1, 2, 1, 4)
    s1 = torch.randn(1, 8, 1, 4)
    # alike codes (cosines below the clamp at 0.8: above it the loss leaves a pair alone) ...
    s2 = (s1 + torch.randn_like(s1)).requires_grad_(True)
    opt = torch.optim.SGD([s2], lr=5.0)
    cos0 = F.cosine_similarity(s1, s2.detach(), dim=1)
    for _ in range(200):  # ... but a shift above every feature correlation: a negative pair
        loss = correspondence_loss(f, f, s1, s2, shift=1.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cos = torch.einsum("ci,cj->ij", F.normalize(s1[0, :, 0], dim=0), F.normalize(s2.detach()[0, :, 0], dim=0))
    assert (cos0 > 0.3).all() and (cos0 < 0.8).all()
    assert cos.max() < 0.05  # pushed apart until no longer alike (the clamp at 0 stops it there)


def test_the_upper_clamp_leaves_alike_codes_alone_and_without_it_they_are_still_pulled_together():
    """A positive pair (features that correspond above the shift) whose codes are already alike, cosine 0.9:
    with stego.stabilize the 0.8 clamp holds S there, so the loss has no gradient and leaves them; without
    it (STEGO's configuration) the gradient pulls them closer still."""
    f = torch.ones(1, 2, 1, 2)  # every position's features alike: F = 1 for every pair, above the shift
    s1 = torch.tensor([[1.0, 0.0]]).T.reshape(1, 2, 1, 1).expand(1, 2, 1, 2).contiguous()
    angle = math.acos(0.9)
    s2 = torch.tensor([[math.cos(angle), math.sin(angle)]]).T.reshape(1, 2, 1, 1).expand(1, 2, 1, 2).contiguous()
    grads = {}
    for stabilize in (True, False):
        s = s2.clone().requires_grad_(True)
        correspondence_loss(f, f, s1, s, shift=0.1, stabilize=stabilize).backward()
        grads[stabilize] = s.grad
    assert F.cosine_similarity(s1, s2, dim=1).min() == pytest.approx(0.9, abs=1e-6)
    assert torch.count_nonzero(grads[True]) == 0  # above the clamp: no gradient
    assert grads[False].abs().max() > 1e-3
    # a step against the gradient turns s2 towards s1: the pair is pulled together further
    stepped = s2 - 0.1 * grads[False]
    assert (F.cosine_similarity(s1, stepped, dim=1) > 0.9 + 1e-4).all()


def test_five_crops_are_the_corners_and_the_centre():
    images = np.arange(2 * 8 * 8 * 1, dtype=np.uint8).reshape(2, 8, 8, 1)
    crops = FiveCrops(images, 0.5)
    assert len(crops) == 10 and crops.side == 4
    got = crops[np.array([0, 3, 4, 9])]
    assert np.array_equal(got[0], images[0, :4, :4]) and np.array_equal(got[1], images[0, 4:, 4:])
    assert np.array_equal(got[2], images[0, 2:6, 2:6]) and np.array_equal(got[3], images[1, 2:6, 2:6])


def test_neighbours_are_the_crops_of_like_images_never_the_crop_itself(tmp_path):
    p, _ = tiny_params(tmp_path, **TINY)
    torch.manual_seed(0)
    model = methods.build(p)
    base = make_split(3, 64, 0)[0]
    images = np.concatenate([base, base])  # image i + 3 is image i: its crops are the nearest
    nn = neighbours(model, images, p, torch.device("cpu"))
    assert nn.shape == (30, 2) and not (nn == np.arange(30)[:, None]).any()
    twin = (np.arange(30) + 15) % 30
    assert (nn == twin[:, None]).any(axis=1).all()


def test_a_training_step_reaches_the_head_and_the_probes_never_the_frozen_trunk(tmp_path):
    # ImageNet weights: a random trunk's features are so alike that every code cosine starts above the clamp
    # (0.8), where the loss has no gradient (measured: mean 0.94 on these images, against 0.57)
    p, _ = tiny_params(tmp_path, **{**TINY, "model.weights": "imagenet"})
    torch.manual_seed(0)
    model = methods.build(p).train()
    assert methods.frozen(p) and not any(q.requires_grad for q in model.net.parameters())
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    x = to_tensor(make_split(4, 32, 0)[0], "cpu")
    f = model.features(x)
    s = model.code(f)
    g = torch.Generator().manual_seed(0)
    loss, parts = stego_loss(f, s, f.flip(0), s.flip(0), p, g)
    labels = torch.randint(0, 8, (4, 32, 32))
    cluster, linear = probe_losses(model, s, labels)
    (loss + cluster + linear).backward()
    assert set(parts) == {"self", "knn", "rand"} and torch.isfinite(loss)
    trained = {n for n, q in model.named_parameters() if q.grad is not None and q.grad.abs().sum() > 0}
    assert trained == {n for n, q in model.named_parameters() if not n.startswith("net.")}  # head + probes
    assert all(q.grad is None for q in model.net.parameters())
    groups = methods.param_groups(model, p)
    assert groups[1]["lr"] == p.stego.probe_lr and len(groups[0]["params"]) + len(groups[1]["params"]) == \
        len([q for q in model.parameters() if q.requires_grad])
    model.train()
    model(x)
    assert all(torch.equal(v, before[k]) for k, v in model.net.state_dict().items())  # statistics as loaded


def test_the_probe_losses_do_not_train_the_head():
    """The probes learn on the detached code: their loss moves the centroids and the linear probe only."""
    p_model = type("M", (), {})()
    p_model.clusters = torch.nn.Parameter(torch.randn(3, 4))
    p_model.probe = torch.nn.Conv2d(4, 3, 1)
    p_model.k = 3
    s = torch.randn(2, 4, 2, 2, requires_grad=True)
    cluster, linear = probe_losses(p_model, s, torch.tensor([[[0, 1], [2, 255]], [[1, 1], [0, 0]]]))
    (cluster + linear).backward()
    assert s.grad is None and p_model.clusters.grad is not None and p_model.probe.weight.grad is not None


@pytest.mark.slow
@pytest.mark.parametrize("pairs", ["knn", "random"])
def test_an_epoch_runs_and_lowers_the_loss(tmp_path, pairs):
    p, _ = tiny_params(tmp_path, **{**TINY, "stego.pairs": pairs, "train.lr": 0.005})
    torch.manual_seed(0)
    model = methods.build(p)
    images, labels = make_split(8, 32, 0)
    nn = neighbours(model, images, p, torch.device("cpu"))
    opt = torch.optim.Adam(methods.param_groups(model, p), lr=p.train.lr)
    g = torch.Generator().manual_seed(0)
    losses = [methods.train_one_epoch(model, images, opt, p, g, torch.device("cpu"), e, labels=labels,
                                      neighbours=nn)[0]["loss"] for e in range(4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_training_without_the_knn_stages_neighbours_says_what_to_run(tmp_path):
    from lib.data.base import DataError

    p, _ = tiny_params(tmp_path, **TINY)
    model = methods.build(p)
    opt = torch.optim.Adam(methods.param_groups(model, p))
    images = make_split(4, 32, 0)[0]
    with pytest.raises(DataError, match=r"needs the knn stage's neighbours of the 20 training crops \(got 0\); "
                                        r"run `dvc repro knn`"):
        methods.train_one_epoch(model, images, opt, p, torch.Generator(), torch.device("cpu"), 0, labels=None,
                                neighbours=np.zeros((0, 0), dtype=np.int32))


@pytest.mark.parametrize("name, backbone, block", [
    ("textures", "efficientnet_lite0", "IAROA vit small 1/31/22"), ("folder", "dino_vits8", "IAROA vit small 1/31/22"),
    ("cocostuff27", "dino_vits8", "Cocostuff27 vit small 1/31/22"), ("cocostuff15", "dinov2_vits14",
                                                                      "Cocostuff27 vit small 1/31/22"),
    ("cocostuff27", "dino_vitb8", "Cocostuff27 10/3 vit_base"), ("cityscapes27", "dino_vitb8", "Cityscapes 10/3"),
    ("potsdam", "dino_vits8", "Potsdam vit small"), ("potsdam3", "dino_vits16", "Potsdam vit small")])
def test_the_loss_settings_are_stegos_block_for_the_data_set_and_backbone(tmp_path, name, backbone, block):
    """`auto` takes the block of STEGO's configuration for the data set and backbone; one that it has no block
    for, the block it leaves active; a number given is kept."""
    from lib.methods.stego_settings import BLOCKS, KEYS

    root = {} if name in ("textures",) else {"data.root": str(tmp_path)}
    if name == "folder":
        (tmp_path / "images").mkdir()
        root["cluster.k"] = 4
    p, _ = tiny_params(tmp_path, **{"method": "stego", "data.name": name, "model.backbone": backbone,
                                    "model.weights": "", **root})
    assert tuple(getattr(p.stego, key) for key in KEYS) == BLOCKS[block]
    mine, _ = tiny_params(tmp_path, **{"data.name": name, "model.backbone": backbone, "model.weights": "", **root,
                                       "stego.rand_shift": 0.3})
    assert mine.stego.rand_shift == 0.3 and mine.stego.self_weight == BLOCKS[block][0]


def test_a_negative_loss_setting_is_refused_by_name(tmp_path):
    from lib.errors import ParamsError

    with pytest.raises(ParamsError, match="'stego.knn_weight' must be 0 or more, got -1"):
        tiny_params(tmp_path, **{"stego.knn_weight": -1.0})
