"""Learning curves: validation scores after each epoch, logged by the train stage, training untouched."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

import stages.train as train_stage
from lib.curves import due, epoch_scores
from lib.models import RawRGB
from stages import prepare as prepare_stage
from tests.conftest import ROOT

PREPARED = SimpleNamespace(classes=["left", "right"], things=[], stuff=[])


def _halves(n=4, split=16):
    """Images whose columns < split are red (class 0), the rest blue (class 1)."""
    x = np.zeros((n, 32, 32, 3), np.uint8)
    x[:, :, :split, 0] = 220
    x[:, :, split:, 2] = 220
    y = np.zeros((n, 32, 32), np.uint8)
    y[:, :, split:] = 1
    return x, y


class Constant(nn.Module):
    """A 'network' that assigns every pixel to cluster 0 of 2."""

    out_channels, stride = 2, 4

    def forward(self, x, normalize=True):
        out = torch.zeros(x.shape[0], 2, x.shape[2] // 4, x.shape[3] // 4)
        out[:, 0] = 1
        return out


def test_scores_by_hand(params):
    x, y = _halves()
    p, _ = params(method="notrain", **{"model.backbone": "rgb", "data.res": 32, "cluster.k": 2, "curves.images": 4,
                                       "curves.max_points": 1000, "train.batch_size": 2})
    # colour separates the halves: k-means on pixel colours and Hungarian matching are perfect
    assert epoch_scores(RawRGB(), x, x, y, PREPARED, p, torch.device("cpu")) == {"acc": 100.0, "miou": 100.0}
    # a network of its own assignments, all cluster 0, on 3/4 class-0 pixels: acc 75; IoU 0.75 and 0
    x, y = _halves(split=24)
    p, _ = params(method="iic", **{"data.res": 32, "cluster.k": 2, "train.batch_size": 2})
    assert epoch_scores(Constant(), x, x, y, PREPARED, p, torch.device("cpu")) == {"acc": 75.0, "miou": 37.5}


def test_due_every_n_epochs(params):
    p, _ = params(**{"curves.every": 2})
    assert [due(p, e) for e in range(4)] == [False, True, False, True]
    p, _ = params(**{"curves.every": 0})
    assert not any(due(p, e) for e in range(4))


TINY = {"data.train_size": 8, "data.val_size": 4, "data.res": 32, "model.dim": 8, "model.weights": "",
        "train.batch_size": 4, "train.epochs": 2, "cluster.images": 8, "cluster.max_points": 500,
        "cluster.niter": 3, "curves.images": 8, "curves.max_points": 500}


def _train(params, tmp_path, name, **overrides):
    _, ppath = params(**{**TINY, **overrides})
    data = tmp_path / "prepared"
    if not data.exists():
        prepare_stage.main(out=str(data), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    run = tmp_path / name
    train_stage.main(data=str(data), out=str(run / "model.pt"), metrics=str(run / "train.json"),
                     live_dir=str(run / "live"), epoch_times=str(run / "times.tsv"),
                     checkpoint=str(run / "ckpt.pt"), neighbours=str(run / "knn.npy"),
                     frozen_features=str(run / "frozen.h5"), params=str(ppath), dvc_yaml=str(ROOT / "dvc.yaml"))
    return run


@pytest.mark.slow
def test_the_train_stage_logs_curves_without_changing_the_training(params, tmp_path, capsys):
    on = _train(params, tmp_path, "on")
    out = capsys.readouterr().out
    assert out.count("validation acc") == 2
    off = _train(params, tmp_path, "off", **{"curves.every": 0})
    weights = [torch.load(r / "model.pt", weights_only=True)["state_dict"] for r in (on, off)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the same training
    acc = (on / "live/plots/metrics/eval/acc.tsv").read_text().splitlines()
    assert acc[0].split() == ["step", "acc"] and [int(r.split()[0]) for r in acc[1:]] == [0, 1]
    assert all(0 < float(r.split()[1]) <= 100 for r in acc[1:])
    assert not (off / "live/plots/metrics/eval").exists()
    # the curves' cost is their time over the epochs' (how large, a measurement of the machine, is the bench's)
    summary = json.loads((on / "train.json").read_text())
    header, *lines = (on / "times.tsv").read_text().splitlines()
    rows = [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]
    curves, epochs = (sum(float(r[key]) for r in rows) for key in ("curves_s", "epoch_time_s"))
    slack = len(rows) * 5e-4  # the table's times are rounded to the millisecond, the summary to 1e-4
    assert (curves - slack) / (epochs + slack) - 5e-5 <= summary["curves_overhead"] <= \
        (curves + slack) / (epochs - slack) + 5e-5 and curves > 0
    assert "curves_overhead" not in json.loads((off / "train.json").read_text())
