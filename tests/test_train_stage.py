"""The train stage: resolved config printed, one-call resume after an interruption, and a resume only
into the same run (the params and deps dvc.yaml lists for the stage)."""
import copy
import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

import stages.train as train_stage
from lib.checkpoint import resume_key
from lib.config import as_dict
from lib.pipeline import stage_params
from stages import prepare as prepare_stage
from tests.conftest import ROOT, tiny_params

TINY = {"data.train_size": 8, "data.val_size": 2, "data.res": 32, "model.dim": 8, "model.weights": "",
        "train.batch_size": 4, "train.epochs": 2, "cluster.images": 8, "cluster.max_points": 500,
        "cluster.niter": 3, "iic.k_over": 4}


def _paths(tmp_path, ppath, dvc_yaml=ROOT / "dvc.yaml"):
    return dict(data=str(tmp_path / "prepared"), out=str(tmp_path / "model.pt"),
                metrics=str(tmp_path / "train.json"), live_dir=str(tmp_path / "live"),
                epoch_times=str(tmp_path / "times.tsv"), neighbours=str(tmp_path / "knn.npy"),
                frozen_features=str(tmp_path / "frozen.h5"), checkpoint=str(tmp_path / "ckpt.pt"), params=str(ppath),
                dvc_yaml=str(dvc_yaml))


def _interrupted_run(params, tmp_path, monkeypatch, dvc_yaml=ROOT / "dvc.yaml", **overrides):
    """Prepare a tiny dataset and start a 2-epoch training that is interrupted in its second epoch,
    after the checkpoint of epoch 1 is written."""
    _, ppath = params(**{**TINY, **overrides})
    prepare_stage.main(out=str(tmp_path / "prepared"), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    paths = _paths(tmp_path, ppath, dvc_yaml)
    real = train_stage.train_one_epoch

    def interrupted(*args, **kwargs):
        if args[6] == 1:  # args[6] is the epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_stage, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage.main(**paths)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["epoch"] == 1
    return paths, real


def _rerun(paths, real, monkeypatch, capsys):
    """Run the stage again with the real epoch; the epochs it ran and what it printed."""
    capsys.readouterr()
    seen = []
    monkeypatch.setattr(train_stage, "train_one_epoch", lambda *a, **k: (seen.append(a[6]), real(*a, **k))[1])
    train_stage.main(**paths)
    return seen, capsys.readouterr().out


@pytest.mark.slow
def test_interrupted_training_resumes_after_the_last_finished_epoch(params, tmp_path, monkeypatch, capsys):
    paths, real = _interrupted_run(params, tmp_path, monkeypatch)
    assert not (tmp_path / "model.pt").exists()
    out = capsys.readouterr().out
    assert "config:" in out and "lr: 0.0005" in out and "backend: faiss" in out  # the resolved config first
    seen, out = _rerun(paths, real, monkeypatch, capsys)
    assert seen == [1]  # only the unfinished epoch ran
    assert "resuming" in out and "not resuming" not in out
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / "ckpt.pt").exists()
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "train.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("change", [{"method": "mdc", "model.classifier": "prototype"}, {"method": "iic"},
                                    {"iic.k_over": 6}, {"infoseg.tau": 0.5}])
@pytest.mark.slow
def test_a_checkpoint_of_another_method_is_not_resumed(params, tmp_path, monkeypatch, capsys, change):
    """Interrupted PiCIE, then `method` (or an iic/infoseg param) changed: a fresh start, said in one line,
    never PiCIE's weights under another objective or a state-dict crash."""
    paths, real = _interrupted_run(params, tmp_path, monkeypatch)
    _, ppath = params(**{**TINY, **change})
    seen, out = _rerun({**paths, "params": str(ppath)}, real, monkeypatch, capsys)
    assert seen == [0, 1], out
    assert "not resuming" in out and "starting afresh" in out
    assert json.loads((tmp_path / "train.json").read_text())["epochs"] == 2


@pytest.mark.slow
def test_a_checkpoint_of_other_code_is_not_resumed(params, tmp_path, monkeypatch, capsys):
    """The code the stage depends on (its deps in dvc.yaml) changed between the two runs."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "method.py").write_text("LOSS = 1\n")
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline["stages"]["train"]["deps"] = ["code"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    paths, real = _interrupted_run(params, tmp_path, monkeypatch, tmp_path / "dvc.yaml")
    (code / "method.py").write_text("LOSS = 2\n")  # edited meanwhile
    seen, out = _rerun(paths, real, monkeypatch, capsys)
    assert seen == [0, 1] and "not resuming" in out


def test_the_resume_key_covers_every_param_the_train_stage_lists_in_dvc_yaml(params):
    """Change any value under any `params:` entry of the train stage and the key changes; change a
    param the stage does not list and it does not. The key reads the list from dvc.yaml, so a param
    added there is covered without touching the code."""
    listed = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert {"seed", "method", "iic", "infoseg", "data", "model", "train"} <= set(listed)
    base = as_dict(params(**TINY)[0])
    key = resume_key(base)

    def leaves(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leaves(v, f"{prefix}.{k}")
        else:
            yield prefix

    changed = 0
    for entry, value in stage_params(base, "train").items():
        for leaf in leaves(value, entry):
            other = copy.deepcopy(base)
            *parents, last = leaf.split(".")
            node = other
            for part in parents:
                node = node[part]
            node[last] = f"{node[last]}-changed"
            assert resume_key(other) != key, f"{leaf} is listed for the train stage but not in its resume key"
            changed += 1
    assert changed > 40  # every leaf of the listed sections, not just the section names
    for unlisted in ("report", "probe", "dump"):
        other = copy.deepcopy(base)
        other[unlisted] = {k: f"{v}-changed" for k, v in other[unlisted].items()}
        assert resume_key(other) == key, unlisted


# Runs the real train stage in a child process; at the start of epoch `KILL_AT` (its checkpoint of the
# epoch before is written) the process SIGKILLs itself: no handler, no cleanup, as `kill -9` would.
KILLING = """
import os, signal, sys
import typer
import stages.train as t
real, kill_at = t.train_one_epoch, int(os.environ.get("KILL_AT", "-1"))
def killed(*a, **k):
    if a[6] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
t.train_one_epoch = killed
typer.run(t.main)
"""


def _train_process(paths, run, kill_at=-1):
    args = [f"--{k.replace('_', '-')}={v}" for k, v in paths.items()]
    env = {**os.environ, "KILL_AT": str(kill_at), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-c", KILLING, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)


def _outputs(run):
    """Every output's bytes, and the metrics less the wall-clock times."""
    files = {f.relative_to(run).as_posix(): hashlib.md5(f.read_bytes()).hexdigest()
             for f in sorted(run.rglob("*")) if f.is_file() and f.name not in ("train.json", "times.tsv")}
    metrics = {k: v for k, v in json.loads((run / "train.json").read_text()).items()
               if k not in ("epoch_time_s", "outside_ratio", "curves_overhead")}
    return files, metrics


@pytest.mark.slow
def test_identical_runs_and_a_killed_then_resumed_run_write_identical_bytes(params, tmp_path):
    """A training SIGKILLed after its first epoch and run again resumes and ends with the bytes of an
    uninterrupted one, model file and curves included (DVC hashes them: a model.pt whose md5 changed on
    every run made every later stage re-run), and leaves no temporary behind. A second uninterrupted run
    under glibc's default allocator (`runtime.allocator: system`; the others run the default `reuse`) writes
    the same bytes too: the model file records no runtime setting."""
    tiny = {**TINY, "train.epochs": 3, "curves.images": 8, "curves.max_points": 500, "runtime.threads": 1}
    _, ppath = params(**tiny)
    (tmp_path / "system").mkdir()
    _, system_ppath = tiny_params(tmp_path / "system", **tiny, **{"runtime.allocator": "system"})
    prepare_stage.main(out=str(tmp_path / "prepared"), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    runs = {}
    for name in ("once", "again", "killed"):
        run = tmp_path / name
        own = system_ppath if name == "again" else ppath
        runs[name] = (run, {**_paths(run, own), "data": str(tmp_path / "prepared")})
    for name in ("once", "again"):
        done = _train_process(runs[name][1], runs[name][0])
        assert done.returncode == 0, done.stderr
    run, paths = runs["killed"]
    killed = _train_process(paths, run, kill_at=1)
    assert killed.returncode == -signal.SIGKILL and "epoch 1/3" in killed.stdout
    assert torch.load(run / "ckpt.pt", weights_only=True)["epoch"] == 1 and not (run / "model.pt").exists()
    (run / ".ckpt.pt.k1ll3d00.pt").write_bytes(b"half a checkpoint")  # what a kill while saving leaves
    resumed = _train_process(paths, run)
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr
    assert [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")] == ["2/3", "3/3"]
    once, again, after_kill = (_outputs(runs[n][0]) for n in ("once", "again", "killed"))
    assert "model.pt" in once[0] and "live/plots/metrics/eval/acc.tsv" in once[0]
    # the allocator's run: the same bytes, the model file included (it records no runtime setting)
    differ = {k for k in once[0] if once[0][k] != again[0].get(k)}
    assert not differ and once == again, differ
    assert "runtime" not in json.loads(torch.load(runs["once"][0] / "model.pt", weights_only=True)["params"])
    assert after_kill == once  # curves too: 3 epochs, numbered 0-2, the same values
    assert len((run / "live/plots/metrics/train/loss.tsv").read_text().splitlines()) == 4
    times = (run / "times.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in times] == ["step", "0", "1", "2"]
    assert not list(run.glob(".*"))  # no temporary left, the planted one included
    assert json.loads((run / "train.json").read_text())["threads"] == 1  # runtime.threads, applied and recorded


def test_more_clusters_than_clustered_pixels_is_a_one_line_error_naming_cluster_k(params, tmp_path, capsys):
    _, ppath = params(**{**TINY, "cluster.k": 40, "cluster.max_points": 30})
    prepare_stage.main(out=str(tmp_path / "prepared"), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    with pytest.raises(SystemExit) as e:
        train_stage.main(**_paths(tmp_path, ppath))
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert "error: k-means was asked for 40 clusters (cluster.k, or cluster.k_over) from only " in err, err
    assert not (tmp_path / "model.pt").exists()
