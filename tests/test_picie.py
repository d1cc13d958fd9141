import numpy as np
import pytest
import torch

from lib.data.textures import make_split
from lib.models import build_model
from lib.deepcluster import Classifiers, cluster_pass
from lib.features import to_tensor
from lib.methods import mdc
from lib.methods.picie import picie_loss, train_one_epoch
from lib.views import augment, forward_views

TINY = {"data.res": 32, "model.dim": 16, "model.weights": "", "train.batch_size": 8,
        "cluster.images": 16, "cluster.max_points": 2000, "cluster.niter": 5}


def _images(n=16):
    return make_split(n, 32, 0)[0]


@pytest.mark.slow
def test_loss_goes_down_on_a_fixed_batch(params):
    p, _ = params(**TINY)
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", "", 16)
    g = torch.Generator().manual_seed(0)
    images = _images()
    levels, _ = cluster_pass(model, images, p, g, torch.device("cpu"), epoch=0)
    clf = Classifiers(levels, "prototype", 16)
    x = to_tensor(images[:8], "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        views = augment(x, p, torch.Generator().manual_seed(1))  # the same P1, P2, G each step
        loss, _ = picie_loss(*forward_views(model, *views), clf, p)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_cluster_pass_levels_and_switches(params):
    images = _images()
    model = build_model("efficientnet_lite0", "", 16)
    p, _ = params(**TINY, **{"cluster.k_over": 12})
    levels, _ = cluster_pass(model, images, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
    assert [c.k for c in levels] == [8, 12]
    assert levels[0].centroids[0].shape == (8, 16)
    assert levels[0].centroids[0] is not levels[0].centroids[1]
    w = levels[0].weights[0]
    assert w.shape == (8,) and torch.isfinite(w).all() and (w > 0).all()
    assert model.training  # restored after the eval-mode clustering pass

    # loss.balance: proportional weighs each cluster by its size, true by 1 / (its size + 1): of the same
    # clusters (the weights do not move k-means), a cluster heavier than another under one is lighter under the other
    p, _ = params(**TINY, **{"loss.balance": "proportional"})
    prop, _ = cluster_pass(model, images, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
    p, _ = params(**TINY, **{"loss.balance": True})
    inv, _ = cluster_pass(model, images, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
    assert torch.equal(prop[0].centroids[0], inv[0].centroids[0])
    for a, b in zip(prop[0].weights, inv[0].weights):
        order = (a[:, None] - a[None]).sign()
        assert torch.equal(order, -(b[:, None] - b[None]).sign()) and order.abs().sum() > 0

    p, _ = params(**TINY, **{"cluster.single": True, "loss.balance": False})
    levels, _ = cluster_pass(model, images, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
    assert levels[0].centroids[0] is levels[0].centroids[1] and levels[0].weights == (None, None)


@pytest.mark.slow
def test_train_one_epoch_runs_every_ablation(params):
    images = _images()
    for switches in ({}, {"loss.cross": False}, {"aug.geometric": False, "aug.photometric": False},
                     {"model.classifier": "linear"}, {"loss.equivariance": "mse"}, {"cluster.k_over": 10},
                     {"cluster.single": True}, {"cluster.labels": "online"}):
        p, _ = params(**TINY, **switches)
        torch.manual_seed(0)
        model = build_model("efficientnet_lite0", "", 16)
        before = [q.detach().clone() for q in model.parameters()]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        stats, times = train_one_epoch(model, images, opt, p, torch.Generator().manual_seed(0),
                                       torch.device("cpu"), 0)
        assert np.isfinite(stats["loss"]), switches
        assert ("cross" in stats) == p.loss.cross
        assert times["train"] > 0 and times["cluster"] > 0 and times["kmeans"] > 0
        assert times["outside_ratio"] == (times["epoch_time_s"] - times["train"]) / times["train"]
        assert times["cluster"] + times["data"] + times["augment"] + times["label"] + times["train"] \
            <= times["epoch_time_s"] + 1e-6  # the phases are disjoint parts of the epoch
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.slow
def test_amp_cpu_runs_the_network_in_bfloat16_on_the_cpu_and_false_leaves_float32(params):
    """train.amp_cpu: bfloat16 autocast on the CPU (the clustering pass, the snapshot labels and the
    training pass); false, the value of every run before it existed, keeps float32 whatever train.amp
    says (train.amp is CUDA's). The same epoch's losses agree to bfloat16's precision."""
    images = _images()
    dtypes, losses = {}, {}
    for amp_cpu in (False, True):
        p, _ = params(**TINY, **{"train.amp": True, "train.amp_cpu": amp_cpu})
        torch.manual_seed(0)
        model = build_model("efficientnet_lite0", "", 16)
        seen = set()
        model.backbone.register_forward_hook(lambda m, i, o: seen.add(o[-1].dtype))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        stats, _ = train_one_epoch(model, images, opt, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
        dtypes[amp_cpu], losses[amp_cpu] = seen, stats["loss"]
    assert dtypes == {False: {torch.float32}, True: {torch.bfloat16}}, dtypes
    assert np.isfinite(losses[True]) and losses[True] != losses[False]
    assert losses[True] == pytest.approx(losses[False], rel=0.05), losses


def test_non_finite_loss_stops_training(params):
    p, _ = params(**TINY)
    model = build_model("efficientnet_lite0", "", 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = _images().copy()
    with torch.no_grad():
        model.fpn.lateral[0].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        train_one_epoch(model, images, opt, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)


@pytest.mark.slow
def test_views_are_cut_from_larger_training_images_at_res(params):
    """PiCIE on COCO: images stored at 640, view 1 a crop of them at 320, view 2 the image at 320."""
    p, _ = params(**TINY, **{"data.train_res": 64, "aug.photometric": False})
    x = to_tensor(make_split(4, 64, 0)[0], "cpu")
    x1, x2, theta = augment(x, p, torch.Generator().manual_seed(0))
    assert x1.shape == x2.shape == (4, 3, 32, 32) and theta is not None
    assert torch.allclose(x2, torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True))
    p, _ = params(**TINY, **{"data.train_res": 64})
    model = build_model("efficientnet_lite0", "", 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats, _ = train_one_epoch(model, make_split(16, 64, 0)[0], opt, p, torch.Generator().manual_seed(0),
                               torch.device("cpu"), 0)
    assert np.isfinite(stats["loss"])


@pytest.mark.slow
def test_modified_deepcluster_is_one_view_with_a_linear_head(params):
    """method: mdc: one augmented view, its own k-means labels, a re-initialised linear classifier."""
    p, _ = params(**TINY, method="mdc")
    g = torch.Generator().manual_seed(0)
    x = to_tensor(_images(8), "cpu")
    x1, x2, theta = augment(x, p, g, views=1)
    assert x1.shape == (8, 3, 32, 32) and x2 is None and theta is None
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", "", 16)
    levels, _ = cluster_pass(model, _images(), p, g, torch.device("cpu"), epoch=0, views=1)
    assert levels[0].centroids[0] is levels[0].centroids[1]  # one clustering
    assert p.model.classifier == "linear"  # mdc's own classifier
    clf = Classifiers(levels, p.model.classifier, 16)
    z1, z2 = forward_views(model, x1, None, None)
    assert z2 is None
    loss, parts = mdc.mdc_loss(z1, z2, clf, p)
    assert set(parts) == {"within"}, parts  # no cross-view term without a second view
    # Adam's first step moves every weight by ~lr: 1e-3 on all of a random-init network overshot on an
    # AVX2 CPU (the loss rose by 0.6 %); 1e-4 is a step small enough for the first-order decrease
    opt = torch.optim.Adam(list(model.parameters()) + list(clf.parameters()), lr=1e-4)
    opt.zero_grad()
    loss.backward()
    assert all(q.grad is not None for q in clf.parameters())
    opt.step()
    after, _ = mdc.mdc_loss(forward_views(model, x1, None, None)[0], None, clf, p)
    assert after.item() < loss.item()
    stats, times = mdc.train_one_epoch(model, _images(), torch.optim.Adam(model.parameters(), 1e-3), p, g,
                                       torch.device("cpu"), 1)
    assert np.isfinite(stats["loss"]) and set(stats) == {"within", "loss", "kmeans_inertia"} and times["train"] > 0


@pytest.mark.slow
def test_cluster_pass_batch_norm_mode(params):
    """cluster.bn: eval leaves the running statistics alone; train (the authors') clusters features
    computed with batch statistics and updates the running ones, and gives other centroids."""
    images = _images()
    found = {}
    for mode in ("eval", "train"):
        p, _ = params(**TINY, **{"cluster.bn": mode})
        torch.manual_seed(0)
        model = build_model("efficientnet_lite0", "", 16)
        before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
        levels, _ = cluster_pass(model, images, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0)
        moved = [k for k, v in model.state_dict().items() if "running_mean" in k and not torch.equal(v, before[k])]
        assert bool(moved) == (mode == "train"), mode
        assert model.training  # training mode after the pass, either way
        found[mode] = levels[0].centroids[0]
    assert not torch.allclose(found["eval"], found["train"])


def test_crop_measure_side_draws_the_side_fraction(params):
    """aug.crop_measure: side (the authors' RandomResizedCrop) draws the side's fraction: the crop's area
    is its square. Square crops (ratio 1) make the area w * h exactly."""
    from lib.transforms import sample_geometric

    area = sample_geometric(64, torch.Generator().manual_seed(0), (0.25, 1.0), ratio=(1, 1))
    side = sample_geometric(64, torch.Generator().manual_seed(0), (0.25, 1.0), ratio=(1, 1), measure="side")
    a = area[:, 0, 0].abs() * area[:, 1, 1]  # half-widths: the crop's area fraction
    s = side[:, 0, 0].abs() * side[:, 1, 1]
    assert torch.allclose(s, a * a) and s.min() >= 0.0625 - 1e-6 and a.min() >= 0.25 - 1e-6
    p, _ = params(**TINY, **{"aug.crop_scale": 0.25, "aug.crop_measure": "side", "aug.photometric": False})
    x = to_tensor(_images(8), "cpu")
    x1, _, theta = augment(x, p, torch.Generator().manual_seed(0))
    assert x1.shape == (8, 3, 32, 32) and (theta[:, 0, 0].abs() * theta[:, 1, 1]).min() < 0.25  # smaller crops


@pytest.mark.slow
def test_head_fit_starts_the_linear_heads_as_predictors_of_the_clusters(params):
    """cluster.head_fit: the epoch's fresh linear heads are fitted on the clustered pixels first, so they
    label those pixels as k-means did (a random head agrees with ~1/K of them), and the within-view loss
    the backbone's first step sees is lower; 0 leaves DeepCluster's random heads."""
    from lib.clustering import assign

    images = _images()
    agreements, losses = {}, {}
    for fit in (0, 200):  # 2000 points: one Adam step per epoch of the fit
        p, _ = params(**TINY, method="mdc", **{"cluster.head_fit": fit})
        torch.manual_seed(0)
        model = build_model("efficientnet_lite0", "", 16)
        levels, _ = cluster_pass(model, images, p, torch.Generator().manual_seed(0), torch.device("cpu"), 0, views=1)
        x, mu = levels[0].samples[0], levels[0].centroids[0]
        assert (x is not None) == (fit > 0)  # the samples are kept only to be fitted on
        if x is None:
            x, _ = cluster_pass(model, images, params(**TINY, method="mdc", **{"cluster.head_fit": 1})[0],
                                torch.Generator().manual_seed(0), torch.device("cpu"), 0, views=1)[0][0].samples
        torch.manual_seed(1)
        clf = Classifiers(levels, p.model.classifier, 16)
        if fit:
            clf.fit_heads(fit, p.cluster.linear_lr, p.loss.balance, 0)
            assert levels[0].samples == (None, None)  # let go after the fit
        head = clf.heads[0][0]
        with torch.no_grad():
            agreements[fit] = (head(x[:, :, None, None])[:, :, 0, 0].argmax(1) == assign(x, mu)).float().mean().item()
            z1, _ = forward_views(model.eval(), to_tensor(images[:8], "cpu"), None, None)
            losses[fit] = mdc.mdc_loss(z1, None, clf, p)[0].item()
    assert agreements[200] > 0.8 and agreements[0] < 0.5, agreements
    assert losses[200] < losses[0] - 0.3, losses


def test_hue_is_read_only_by_photometric_views(params):
    """The study pairs `aug.hue=0.5` with `aug.photometric=false` as differing in photometric invariance
    alone: without photometric views the hue range must change nothing, with them it must change the views."""
    x = to_tensor(_images(4), "cpu")

    def views(photometric, hue):
        p, _ = params(**TINY, **{"aug.photometric": photometric, "aug.hue": hue})
        return augment(x, p, torch.Generator().manual_seed(0))

    off_narrow, off_wide = views(False, 0.1), views(False, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(off_narrow, off_wide))
    on_narrow, on_wide = views(True, 0.1), views(True, 0.5)
    assert torch.equal(on_narrow[2], on_wide[2])  # the same draws: G is unchanged
    assert not torch.equal(on_narrow[0], on_wide[0]) and not torch.equal(on_narrow[1], on_wide[1])
