"""The train stage: resolved config printed, one-call resume after an interruption."""
import numpy as np
import pytest
import torch

import stages.train as train_stage
from stages import prepare as prepare_stage

TINY = {"data.train_size": 8, "data.val_size": 2, "data.res": 32, "model.dim": 8, "model.weights": "",
        "train.batch_size": 4, "train.epochs": 2, "cluster.images": 8, "cluster.max_points": 500,
        "cluster.niter": 3}


def _interrupted_run(params, tmp_path, monkeypatch):
    """Prepare a tiny dataset and start a 2-epoch training that is interrupted in its second epoch."""
    _, ppath = params(**TINY)
    data = tmp_path / "prepared"
    prepare_stage.main(out=str(data), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    paths = dict(data=str(data), out=str(tmp_path / "model.pt"), metrics=str(tmp_path / "train.json"),
                 live_dir=str(tmp_path / "live"), checkpoint=str(tmp_path / "ckpt.pt"), params=str(ppath))
    real = train_stage.train_one_epoch

    def interrupted(*args, **kwargs):
        if args[6] == 1:  # args[6] is the epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_stage, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage.main(**paths)
    return paths, real


def test_interrupted_training_resumes_after_the_last_finished_epoch(params, tmp_path, monkeypatch, capsys):
    paths, real = _interrupted_run(params, tmp_path, monkeypatch)
    assert (tmp_path / "ckpt.pt").is_file() and not (tmp_path / "model.pt").exists()
    out = capsys.readouterr().out
    assert "config:" in out and "lr:" in out  # the resolved config is printed first

    seen = []
    monkeypatch.setattr(train_stage, "train_one_epoch",
                        lambda *a, **k: (seen.append(a[6]), real(*a, **k))[1])
    train_stage.main(**paths)
    assert seen == [1]  # only the unfinished epoch ran
    assert "resuming" in capsys.readouterr().out
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / "ckpt.pt").exists()
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_a_checkpoint_of_other_code_is_not_resumed(params, tmp_path, monkeypatch, capsys):
    paths, real = _interrupted_run(params, tmp_path, monkeypatch)
    monkeypatch.setattr(train_stage, "train_one_epoch", real)
    monkeypatch.setattr(train_stage, "code_digest", lambda: "edited-code")  # the code changed meanwhile
    capsys.readouterr()
    train_stage.main(**paths)
    assert "resuming" not in capsys.readouterr().out


def test_a_checkpoint_of_other_params_is_not_resumed(params, tmp_path, monkeypatch, capsys):
    _, ppath = params(**TINY)
    data = tmp_path / "prepared"
    prepare_stage.main(out=str(data), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    torch.save({"config": "something else", "epoch": 1}, tmp_path / "ckpt.pt")
    _, ppath1 = params(**{**TINY, "train.epochs": 1})
    train_stage.main(data=str(data), out=str(tmp_path / "model.pt"), metrics=str(tmp_path / "train.json"),
                     live_dir=str(tmp_path / "live"), checkpoint=str(tmp_path / "ckpt.pt"), params=str(ppath1))
    assert "resuming" not in capsys.readouterr().out
    assert np.isfinite(__import__("json").loads((tmp_path / "train.json").read_text())["final_loss"])
