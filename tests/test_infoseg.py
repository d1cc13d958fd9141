"""InfoSeg: segmentation step, soft assignment, MI step, network gradients."""
import math

import torch

from lib.data.textures import make_split
from lib.features import to_tensor
from lib.methods.infoseg import (InfoSegNet, ResidualStage, assignment, build, infoseg_loss, pair_scores,
                                 probabilities, train_one_epoch)
from lib.mi import iic_mutual_information
from lib.views import augment, forward_views


def test_probabilities_and_soft_assignment_by_hand():
    local = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # one position, P = 2
    glob = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # K = 2 global features
    v = probabilities(local, glob, tau=0.5)  # scores 2 and 0 -> softmax(1, 0)
    e = math.exp(1.0)
    assert torch.allclose(v.flatten(), torch.tensor([e / (e + 1), 1 / (e + 1)]))
    s = assignment(v, glob)
    assert torch.allclose(s.flatten(), torch.tensor([2 * e / (e + 1), 1 / (e + 1)]))
    assert torch.allclose(assignment(v, glob, hard=True).flatten(), torch.tensor([2.0, 0.0]))


def test_positives_are_the_diagonal_of_the_pair_scores():
    torch.manual_seed(0)
    local, s = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    scores = pair_scores(local, s)
    assert scores.shape == (3, 3, 2, 2)
    assert torch.allclose(scores[1, 2], (local[1] * s[2]).sum(0))


def test_loss_is_minus_the_bound_and_reaches_minus_2log2_when_images_separate():
    # each image's local features align with its own global feature and are orthogonal to the others'
    local = torch.eye(3).view(3, 3, 1, 1) * 20
    glob = torch.eye(3).view(3, 1, 3) * 20  # K = 1 class: S = H
    loss, v = infoseg_loss(local, glob, tau=0.8)
    assert v.shape == (3, 1, 1, 1)
    # positives 400 -> log 2 each; negatives 0 -> -(log 2 - log 2) = 0 ... both terms by hand:
    expected_bound = (math.log(2) - math.log1p(math.exp(-400))) - (math.log1p(1) + 0 - math.log(2))
    assert math.isclose(-loss.item(), expected_bound, abs_tol=1e-5)


def test_one_step_lowers_each_loss_and_every_parameter_gets_a_gradient():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for bound, hard in (("jsd", False), ("dv", False), ("jsd", True)):
        torch.manual_seed(0)
        net = InfoSegNet(k=3, dim=32, width=16)
        local, glob = net.features(x)
        assert local.shape == (4, 32, 8, 8) and glob.shape == (4, 3, 32)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss, _ = infoseg_loss(local, glob, tau=0.8, bound=bound, hard=hard)
        assert torch.isfinite(loss)
        loss.backward()
        missing = [n for n, q in net.named_parameters() if q.grad is None or not q.grad.abs().sum() > 0]
        assert not missing, (bound, hard, missing[:3])
        opt.step()
        with torch.no_grad():  # train mode both times: the same batch statistics
            after, _ = infoseg_loss(*net.features(x), tau=0.8, bound=bound, hard=hard)
        assert after.item() < loss.item(), (bound, hard, loss.item(), after.item())


def test_iic_objective_raises_the_mutual_information_of_the_two_views(params):
    """infoseg.objective: iic (Table 2): IIC's MI between V of the two views replaces the MI step."""
    p, _ = params(method="infoseg", **{"data.res": 32, "infoseg.dim": 16, "infoseg.width": 8,
                                       "infoseg.objective": "iic", "train.batch_size": 4})
    torch.manual_seed(0)
    net = build(p)
    images = make_split(8, 32, 0)[0]
    views = augment(to_tensor(images[:4], "cpu"), p, torch.Generator().manual_seed(1))  # fixed P1, P2, G
    assert views[2] is not None  # the geometric transform is applied to view 2's V

    def mi():
        v1, v2 = forward_views(net, *views, normalize=False)
        assert v1.shape == v2.shape == (4, 8, 8, 8) and torch.allclose(v1.sum(1), torch.ones(4, 8, 8))  # K = 8
        return iic_mutual_information(v1, v2, p.iic.displacement)

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = mi()
    (-before).backward()
    missing = [n for n, q in net.named_parameters() if q.grad is None or not q.grad.abs().sum() > 0]
    assert not missing, missing[:3]
    opt.step()
    assert mi().item() > before.item() + 1e-4
    stats, _ = train_one_epoch(net, images, opt, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
    assert set(stats) == {"mi", "loss"} and math.isclose(stats["loss"], -stats["mi"], rel_tol=1e-6)
    p_mi, _ = params(method="infoseg", **{"data.res": 32, "infoseg.dim": 16, "infoseg.width": 8,
                                          "train.batch_size": 4})
    stats, _ = train_one_epoch(net, images, opt, p_mi, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
    assert set(stats) == {"loss"}  # the MI step's bound, no IIC term


def test_residual_stage_shortcut_is_a_strided_1x1_conv_and_trains_channels_last_on_one_thread():
    """The shortcut subsamples, then convolves: the strided 1x1 convolution's function (odd sizes too),
    without oneDNN's channels-last 1x1 stride-2 backward kernel, which corrupts the heap on one thread
    with fewer than 8 input channels (this test then dies of SIGABRT or SIGSEGV)."""
    torch.manual_seed(0)
    stage = ResidualStage(4, 8, 2).eval()
    x = torch.randn(2, 4, 15, 16)
    conv, bn = stage.skip
    expected = bn(torch.nn.functional.conv2d(x, conv.weight, stride=2))
    assert torch.allclose(stage.skip(x[:, :, ::2, ::2]), expected, atol=1e-6)
    assert stage(x).shape == (2, 8, 8, 8)
    stage = stage.train().to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last).requires_grad_()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(50):
            stage(x).sum().backward()
    finally:
        torch.set_num_threads(threads)
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0
