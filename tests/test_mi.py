"""The mutual-information objectives against hand-computed values."""
import math

import torch
import torch.nn.functional as F

from lib.mi import dv_bound, iic_mutual_information, joint_distribution, jsd_bound


def _one_hot(labels, k):
    return F.one_hot(labels, k).permute(0, 3, 1, 2).float()


def test_mi_of_identical_one_hot_assignments_is_their_entropy():
    labels = torch.tensor([[[0, 0, 1, 2], [0, 1, 1, 2]]])  # 1 x 2 x 4: counts 3, 3, 2 of 8
    p = _one_hot(labels, 3)
    entropy = -sum(c / 8 * math.log(c / 8) for c in (3, 3, 2))
    assert math.isclose(iic_mutual_information(p, p).item(), entropy, rel_tol=1e-5)


def test_mi_of_independent_assignments_is_zero_and_joint_is_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 4, (8, 64, 64), generator=g), torch.randint(0, 4, (8, 64, 64), generator=g)
    assert iic_mutual_information(_one_hot(a, 4), _one_hot(b, 4)).item() < 1e-3  # ~0 for 32k independent pairs
    assert abs(iic_mutual_information(torch.full((1, 4, 3, 3), 0.25), torch.full((1, 4, 3, 3), 0.25))) < 1e-6
    j = joint_distribution(torch.softmax(torch.randn(2, 4, 5, 5), 1), torch.softmax(torch.randn(2, 4, 5, 5), 1), 1)
    assert torch.allclose(j, j.t()) and math.isclose(j.sum().item(), 1.0, rel_tol=1e-6)


def test_displacement_pairs_a_pixel_with_its_neighbours():
    # a left-right split seen with displacement 1: neighbours across the boundary mix the classes
    labels = torch.tensor([[[0, 0, 1, 1]] * 4])
    p = _one_hot(labels, 2)
    assert iic_mutual_information(p, p, displacement=1).item() < iic_mutual_information(p, p).item() - 0.1


def test_jsd_bound_of_separable_scores_approaches_its_maximum():
    pos, neg = torch.full((100,), 30.0), torch.full((1000,), -30.0)
    assert math.isclose(jsd_bound(pos, neg).item(), 2 * math.log(2), rel_tol=1e-6)
    same = torch.zeros(10)
    assert abs(jsd_bound(same, same).item()) < 1e-6  # indistinguishable pairs: no information
    assert jsd_bound(torch.full((10,), 3.0), torch.full((10,), -3.0)) > jsd_bound(torch.ones(10), -torch.ones(10))


def test_dv_bound_by_hand():
    pos, neg = torch.tensor([2.0, 4.0]), torch.tensor([0.0, math.log(3.0)])
    # E_pos = 3, log E_neg[e^T] = log((1 + 3) / 2) = log 2
    assert math.isclose(dv_bound(pos, neg).item(), 3 - math.log(2), rel_tol=1e-6)


def test_iic_heads_one_step_raises_the_mutual_information():
    from lib.methods.iic import iic_loss
    from lib.methods.iic import ClusterHeads

    torch.manual_seed(0)
    heads = ClusterHeads(dim=8, k=3, k_over=5)
    z = torch.randn(2, 8, 6, 6)
    z2 = z + 0.05 * torch.randn_like(z)  # two views of the same content
    loss, parts = iic_loss(heads, z, z2)
    assert set(parts) == {"mi", "mi_over"} and math.isclose(loss.item(), -(parts["mi"] + parts["mi_over"]).item(), rel_tol=1e-6)
    loss.backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in heads.parameters())
    torch.optim.Adam(heads.parameters(), lr=1e-2).step()
    assert iic_loss(heads, z, z2)[0].item() < loss.item()


def test_fresh_iic_network_starts_away_from_the_uniform_saddle():
    """IIC's heads read the FPN output before L2 normalisation. On unit vectors a fresh head's assignments
    are near uniform, where the MI and its gradient vanish; training then never left it (loss -0.000)."""
    from lib.methods.iic import AssignmentNet
    from lib.models import build_model

    torch.manual_seed(0)
    net = AssignmentNet(build_model("efficientnet_lite0", "imagenet", 16, 2), k=4).eval()
    x = torch.rand(2, 3, 64, 64)
    x[..., 32:] = torch.rand(2, 3, 1, 1)  # two regions per image
    with torch.no_grad():
        p = net(x)
        on_unit_vectors = net.heads(net.net(x))[0]
    assert p.shape == (2, 4, 16, 16) and torch.allclose(p.sum(1), torch.ones(2, 16, 16))
    assert iic_mutual_information(p, p).item() > 0.05
    assert iic_mutual_information(on_unit_vectors, on_unit_vectors).item() < 1e-3  # what it was
