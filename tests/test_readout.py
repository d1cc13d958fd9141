"""Linear probe (Table 7), re-training (Table 8), seed statistics."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.data.textures import make_split
from lib.errors import ParamsError
from lib.metrics import confusion, flat_scores, majority
from lib.models import build_model
from lib.readout import fit_probe, fit_supervised, label_maps
from lib.study.runner import metric_files, stems_made_up_to
from lib.study.stats import aggregate, flat

ROOT = Path(__file__).resolve().parents[1]

COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230]], dtype=np.uint8)


def _colour_coded(n, seed):
    """Images whose label is a function of the colour: left half one class, right half another."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 32, 32), dtype=np.uint8)
    for i in range(n):
        a, b = rng.choice(3, 2, replace=False)
        labels[i, :, :16], labels[i, :, 16:] = a, b
    labels[:, 0, 0] = 255  # an ignored pixel
    return COLOURS[np.minimum(labels, 2)], labels


def test_probe_beats_chance_when_labels_are_a_function_of_the_features(params):
    p, _ = params(**{"data.res": 32, "probe.epochs": 15, "probe.lr": 0.05, "train.batch_size": 8})
    images, labels = _colour_coded(32, 0)
    model = build_model("rgb")  # features = pooled colour: the label is a linear function of them
    head, history = fit_probe(model, images, labels, 3, p, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert history[-1] < history[0]
    val_images, val_labels = _colour_coded(8, 1)
    hist = confusion(label_maps(lambda x: head(model(x)), val_images, (32, 32), 3, "cpu", 32), val_labels, 3, 3)
    assert hist.sum() == 8 * 32 * 32 - 8  # every labelled pixel, the ignored ones left out
    scores = flat_scores(hist, ["red", "green", "blue"])
    assert scores["acc"] > 90, scores  # chance is ~33 %


@pytest.mark.slow
def test_retrain_loss_decreases_and_every_parameter_learns(params):
    p, _ = params(**{"data.res": 32, "retrain.epochs": 6, "retrain.lr": 0.003, "train.batch_size": 8})
    images, labels = make_split(16, 32, 0)
    torch.manual_seed(0)
    net = build_model("efficientnet_lite0", "imagenet", dim=16)
    before = [q.detach().clone() for q in net.parameters()]
    model, history = fit_supervised(net, images, labels, 8, p, torch.Generator().manual_seed(0),
                                    torch.device("cpu"))
    assert all(math.isfinite(h) for h in history) and history[-1] < history[0] - 0.1, history
    unchanged = [i for i, (a, b) in enumerate(zip(before, net.parameters())) if torch.equal(a, b)]
    assert not unchanged, f"{len(unchanged)} parameter tensors never updated"
    hist = confusion(label_maps(model, images, (32, 32), 8, "cpu", 32), labels, 8, 8)
    assert hist.sum() == 16 * 32 * 32


def test_majority_colours_clusters_by_their_most_frequent_class():
    hist = np.array([[5, 0, 1, 0], [2, 0, 7, 0], [0, 0, 1, 0]])  # classes x clusters
    hist[2, 3] = 4
    assert majority(hist).tolist() == [0, -1, 1, 2]


def test_seed_aggregation_mean_and_sample_std():
    runs = [{"eval": {"acc": 30.0, "miou": 10.0}, "probe": {"acc": 50.0}},
            {"eval": {"acc": 32.0, "miou": 12.0}, "probe": {"acc": None}},
            {"eval": {"acc": 37.0, "miou": 14.0}, "probe": {"acc": 54.0}}]
    stats = aggregate(runs)
    # acc: mean 33, deviations -3, -1, 4 -> sample variance (9 + 1 + 16) / 2 = 13
    assert stats["eval.acc"][0] == 33.0 and math.isclose(stats["eval.acc"][1], math.sqrt(13)) and stats["eval.acc"][2] == 3
    assert stats["eval.miou"][:2] == (12.0, 2.0)
    assert stats["probe.acc"] == (52.0, math.sqrt(8), 2)  # the null run is left out
    assert "retrain.acc" not in stats
    f = flat(stats)
    assert f["eval.acc_mean"] == 33.0 and f["eval.acc_std"] == round(math.sqrt(13), 4) and f["probe.acc_n"] == 2
    assert aggregate([{"eval": {"acc": 40.0}}])["eval.acc"] == (40.0, 0.0, 1)


def test_the_metrics_files_a_run_reports_are_those_dvc_yaml_declares():
    files = metric_files(ROOT / "dvc.yaml")
    assert files == {"train": "metrics/train.json", "eval": "metrics/eval.json", "probe": "metrics/probe.json",
                     "retrain": "metrics/retrain.json"}


def test_a_targeted_seed_run_keeps_only_the_metrics_its_stages_wrote():
    """`--target evaluate` runs prepare..evaluate: probe/retrain metrics in it are the workspace's, stale."""
    assert stems_made_up_to("evaluate") == {"train", "eval"}
    assert stems_made_up_to("report") == {"train", "eval", "probe", "retrain"}
    with pytest.raises(ParamsError, match="no such stage"):
        stems_made_up_to("evalute")
