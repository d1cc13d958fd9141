"""End to end: `dvc repro`, `dvc exp run -S loss.cross=false`, `dvc metrics diff` in a fresh git repo."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.optimize import linear_sum_assignment

from lib import methods
from tests import fixtures
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # minutes of DVC runs: `pytest -m "not slow"` leaves them out

TINY = {
    "data": {"train_size": 24, "val_size": 8, "res": 32},
    "model": {"dim": 16},
    "cluster": {"images": 24, "max_points": 3000, "niter": 5},
    "train": {"epochs": 1, "batch_size": 8},
    "dump": {"train_points": 3000},
    "infoseg": {"dim": 32, "width": 16},
    "iic": {"k_over": 12},
    "report": {"images": 2},
}


def _run(args, cwd, env):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def _project(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("lib", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               DVC_NO_ANALYTICS="1")
    _run(["git", "init", "-q", "-b", "main"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)
    return repo, env


def _rescored(repo, n_classes):
    """acc and mIoU recomputed from the written predictions and the prepared labels, with a matching of
    our own (every pixel labelled or 255 = ignored): what metrics/eval.json must say."""
    preds = np.load(repo / "results/predictions.npy").astype(np.int64)
    labels = np.load(repo / "data/prepared/val_labels.npy").astype(np.int64)
    assert preds.shape == labels.shape
    k = int(np.load(repo / "models/classifier.npy").shape[0])
    keep = labels != 255
    hist = np.zeros((n_classes, k), dtype=np.int64)
    np.add.at(hist, (labels[keep], preds[keep]), 1)
    rows, cols = linear_sum_assignment(hist, maximize=True)
    acc = 100 * hist[rows, cols].sum() / hist.sum()
    iou = [hist[r, c] / (hist[r].sum() + hist[:, c].sum() - hist[r, c]) for r, c in zip(rows, cols)
           if hist[r].sum() + hist[:, c].sum() > 0]
    return acc, 100 * np.mean(iou)


def _assert_scores_are_the_predictions(repo, n_classes):
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    acc, miou = _rescored(repo, n_classes)
    assert metrics["acc"] == pytest.approx(acc, abs=1e-3) and metrics["miou"] == pytest.approx(miou, abs=1e-3)
    return metrics


def test_repro_then_ablation_then_metrics_diff(tmp_path):
    repo, env = _project(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["repro"], repo, env)
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    for key in ("acc", "miou", "things_miou", "stuff_miou", "iou_brick", "iou_horse"):
        assert isinstance(metrics[key], (int, float)), key
    assert all(not isinstance(v, (list, dict)) for v in metrics.values())
    preds = np.load(repo / "results/predictions.npy")
    assert preds.shape == (8, 32, 32) and preds.max() < 8 and metrics["val_images"] == 8
    _assert_scores_are_the_predictions(repo, 8)  # the scores are those of the written predictions
    for artifact in ("models/model.pt", "features/features.h5", "models/classifier.npy", "reports/report.md",
                     "reports/confusion.png", "reports/figures/overlays.png", "reports/figures/curves.png",
                     "reports/train/plots/metrics/train/loss.tsv"):
        assert (repo / artifact).is_file(), artifact
    report = (repo / "reports/report.md").read_text()
    assert f"| all | {metrics['acc']:.2f} | {metrics['miou']:.2f} |" in report  # the scores it shows are eval.json's
    probe, retrain = (json.loads((repo / f"metrics/{s}.json").read_text()) for s in ("probe", "retrain"))
    assert f"| linear probe on frozen features (Table 7) | {probe['acc']:.2f} | {probe['miou']:.2f} |" in report
    assert f"(C-Acc, C-mIoU) | {retrain['c_acc']:.2f} | {retrain['c_miou']:.2f} |" in report
    train = json.loads((repo / "metrics/train.json").read_text())
    times = (repo / "reports/epoch_times.tsv").read_text().splitlines()  # one row per epoch, its mean is the metric
    assert times[0].split("\t")[:3] == ["step", "epoch_time_s", "outside_ratio"] and len(times) == 2
    assert train["epoch_time_s"] == pytest.approx(float(times[1].split("\t")[1]), abs=0.01)
    assert (repo / "reports/figures/retrieval.png").is_file()
    for stage, keys in (("probe", ("acc", "miou", "iou_brick")), ("retrain", ("acc", "miou", "c_acc", "c_miou"))):
        m = json.loads((repo / f"metrics/{stage}.json").read_text())
        assert m["labelled"] == 1 and all(0 <= m[k] <= 100 for k in keys), (stage, m)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline"], repo, env)

    # the runtime section changes where and how fast a stage computes, not what: on a finished run, no stage
    # re-runs for any of its knobs but the fingerprint, which runs on every repro (dvc.yaml's always_changed)
    knobs = ("runtime.device=cpu", "runtime.threads=1", "runtime.allocator=system", "runtime.inference_batch=3",
             "runtime.workers=1", "runtime.timeout=60")
    log = _run(dvc + ["exp", "run", *(a for kv in knobs for a in ("-S", kv))], repo, env)
    assert set(re.findall(r"Running stage '(\w+)'", log)) == {"fingerprint"}, log
    assert "runtime:\n  device: cpu\n  threads: 1" in (repo / "params.yaml").read_text()  # they were applied
    _run(["git", "checkout", "--", "."], repo, env)

    log = _run(dvc + ["exp", "run", "-S", "loss.cross=false"], repo, env)
    assert "'prepare' didn't change" in log  # only the stages that depend on the switch re-run
    assert "Running stage 'train'" in log
    diff = json.loads(_run(dvc + ["metrics", "diff", "--json"], repo, env))
    assert set(diff["metrics/eval.json"]) >= {"acc", "miou"}
    assert diff["metrics/eval.json"]["acc"]["old"] == metrics["acc"]
    train_diff = json.loads((repo / "metrics/train.json").read_text())
    assert "cross" not in (repo / "reports/train/metrics.json").read_text()
    assert train_diff["epochs"] == 1
    shown = json.loads(_run(dvc + ["exp", "show", "--json"], repo, env))
    assert '"cross": false' in json.dumps(shown)
    # the learning curves of the two runs, side by side (one validation score per epoch)
    plots = subprocess.run(dvc + ["plots", "diff", "--json", "HEAD"], cwd=repo, env=env, capture_output=True,
                           text=True, check=True).stdout
    curves = [v for name, v in json.loads(plots)["data"].items() if name.startswith("Validation scores")]
    values = curves[0][0]["content"]["data"]["values"]
    assert {(v["rev"], v["filename::field"]) for v in values} == {
        (rev, f"{m}.tsv::{m}") for rev in ("HEAD", "workspace") for m in ("acc", "miou")}

    # scored as papers since STEGO: only the scoring stages re-run, and the metrics say which protocol
    _run(["git", "checkout", "--", "."], repo, env)
    _run(dvc + ["checkout", "-f"], repo, env)
    log = _run(dvc + ["exp", "run", "-S", "eval.crf=true", "-S", "eval.flip=true"], repo, env)
    # (the fingerprint stage runs on every repro: dvc.yaml's always_changed)
    assert set(re.findall(r"Running stage '(\w+)'", log)) == {"fingerprint", "evaluate", "report"}, log
    diff = json.loads(_run(dvc + ["metrics", "diff", "--json"], repo, env))["metrics/eval.json"]
    assert diff["crf"] == {"old": 0, "new": 1, "diff": 1} and diff["flip"] == {"old": 0, "new": 1, "diff": 1}
    assert diff["acc"]["old"] == metrics["acc"]
    _assert_scores_are_the_predictions(repo, 8)
    assert "scored with flip averaging + dense CRF (10 iterations)" in (repo / "reports/report.md").read_text()


def test_folder_of_unlabelled_images_runs_end_to_end(tmp_path):
    """data.name: folder without labels: everything but the scoring runs; the report shows segments."""
    import numpy as np
    from PIL import Image

    repo, env = _project(tmp_path)
    images = tmp_path / "mine" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        size = (48 + 4 * i, 40)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(images / f"p{i}.jpg")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(name="folder", root=str(tmp_path / "mine"))
    params["cluster"]["k"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert metrics == {"val_images": 2, "flip": 0, "crf": 0}  # nothing scored, and the protocol that would have
    report = (repo / "reports/report.md").read_text()
    assert "No labels" in report and (repo / "reports/figures/overlays.png").is_file()
    assert json.loads((repo / "metrics/probe.json").read_text()) == {"labelled": 0}
    assert json.loads((repo / "metrics/retrain.json").read_text()) == {"labelled": 0}
    assert np.load(repo / "results/predictions.npy").max() < 4


def test_a_changed_folder_is_prepared_again_and_an_unchanged_one_is_not(tmp_path):
    """DVC sees data.root's path, not its files: the fingerprint stage makes it see them."""
    from PIL import Image

    repo, env = _project(tmp_path)
    images = tmp_path / "mine" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def photo(name, side=40):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(images / name)

    for i in range(4):
        photo(f"p{i}.png")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(name="folder", root=str(tmp_path / "mine"))
    params["cluster"]["k"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = [sys.executable, "-m", "dvc", "repro", "prepare"]
    assert "Running stage 'prepare'" in _run(repro, repo, env)
    assert "'prepare' didn't change" in _run(repro, repo, env)  # nothing changed: not prepared again
    (tmp_path / "mine" / "notes.txt").write_text("not an image")  # a file the folder dataset does not read
    assert "'prepare' didn't change" in _run(repro, repo, env)
    photo("p4.png")  # a new image
    assert "Running stage 'prepare'" in _run(repro, repo, env)
    assert json.loads((repo / "metrics/prepare.json").read_text())["train_images"] + \
        json.loads((repo / "metrics/prepare.json").read_text())["val_images"] == 5
    photo("p0.png", side=44)  # an image replaced
    assert "Running stage 'prepare'" in _run(repro, repo, env)
    (images / "p1.png").unlink()  # one removed
    assert "Running stage 'prepare'" in _run(repro, repo, env)


@pytest.mark.parametrize("name, build, extra", [
    ("cocostuff27", lambda root: fixtures.cocostuff_small(root), {"min_side": 40}),
    ("cityscapes27", lambda root: fixtures.cityscapes(root), {}),
    ("cocopersons", lambda root: fixtures.cocopersons(root), {"person_min_fraction": 0.0, "res": 40}),
    ("potsdam", lambda root: fixtures.potsdam(root), {"res": 40}),
])
def test_one_epoch_repro_on_each_benchmark_fixture(tmp_path, name, build, extra):
    """`data.name` + `data.root` pointing at the official layout is all `dvc repro` needs."""
    repo, env = _project(tmp_path)
    build(tmp_path / "download")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(name=name, root=str(tmp_path / "download"), train_res="auto", **extra)
    params["cluster"]["k"] = "auto"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    k = {"cocostuff27": 27, "cityscapes27": 27, "cocopersons": 2, "potsdam": 6}[name]
    metrics = _assert_scores_are_the_predictions(repo, k)
    prep = json.loads((repo / "metrics/prepare.json").read_text())
    assert metrics["val_images"] == prep["val_images"] > 0
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert len(meta["classes"]) == k and np.load(repo / "models/classifier.npy").shape[0] == k
    assert (repo / "reports/figures/overlays.png").is_file()


def test_every_method_runs_end_to_end_on_a_vision_transformer(tmp_path):
    """`dvc exp run -S method=...` on a random-init DINO ViT-S/8 (and PiCIE on a DINOv2 ViT-S/14): each method
    trains, dumps at the transformer's stride, is scored and reported the way it should be; STEGO's
    neighbours are computed by the knn stage, and not again for another seed. (On the default backbone:
    test_repro_then_ablation_then_metrics_diff, and every method's network in tests/test_methods.py.)"""
    import h5py

    repo, env = _project(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"].update(backbone="dino_vits8", weights="")
    params["retrain"]["epochs"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["repro"], repo, env)  # PiCIE
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline"], repo, env)
    _assert_scores_are_the_predictions(repo, 8)
    assert "`dino_vits8` patch tokens + 1x1 projection" in (repo / "reports/report.md").read_text()
    for method, scored_by, trained, line in (
            ("mdc", "linear", True, "- Modified DeepCluster: one view"),
            ("iic", "argmax", True, "- IIC: K `8`, auxiliary over-clustering head `12`"),
            ("infoseg", "argmax", True, "- model: InfoSeg's network (P 32, width 16"),
            ("notrain", "prototype", False, "- no training"),  # notrain / linear: test_config
            ("stego", "argmax", True, "- STEGO: the backbone frozen, a code of dim `70`")):
        log = _run(dvc + ["exp", "run", "-S", f"method={method}"], repo, env)
        assert "'prepare' didn't change" in log
        _assert_scores_are_the_predictions(repo, 8)
        detail = json.loads((repo / "results/evaluation.json").read_text())
        assert detail["classifier"] == scored_by, method
        assert json.loads((repo / "metrics/train.json").read_text())["epochs"] == (1 if trained else 0)
        report = (repo / "reports/report.md").read_text()
        assert f"- method: `{method}` ({methods.label(method)})" in report and line in report  # the module's words
        assert ("own argmax" in report) == (scored_by == "argmax")
        assert ("linear classifier fitted" in report) == (scored_by == "linear")
        clf = np.load(repo / "models/classifier.npy")  # [W | b]; the identity for the argmax methods
        assert clf.shape[0] == 8 and (scored_by != "argmax" or np.array_equal(clf, np.eye(8, 9)))
        with h5py.File(repo / "features/features.h5", "r") as f:  # InfoSeg's network of its own: stride 4
            assert int(f.attrs["stride"]) == (4 if methods.spec(method).stride else 8), method
        knn = np.load(repo / "features/knn.npy")
        assert knn.shape == ((5 * 24, 7) if methods.spec(method).neighbours else (0, 0)), method
    log = _run(dvc + ["exp", "run", "-S", "method=stego", "-S", "seed=1", "train"], repo, env)
    assert "Running stage 'knn'" not in log and "Running stage 'train'" in log  # the neighbours are the seed's too
    # the frozen trunk's features computed once (frozen.cache): STEGO caches them, its neighbours come from them,
    # and a second seed re-uses both
    cache = ["-S", "method=stego", "-S", "frozen.cache=true"]
    log = _run(dvc + ["exp", "run", *cache, "-S", "seed=0", "evaluate"], repo, env)  # (the workspace had seed 1)
    assert "Running stage 'frozen'" in log and "Running stage 'knn'" in log and "GiB -> features/frozen.h5" in log
    _assert_scores_are_the_predictions(repo, 8)
    with h5py.File(repo / "features/frozen.h5", "r") as f:
        assert f["train/level0"].shape == (5 * 24, 384, 4, 4) and f["val/level0"].shape == (8, 384, 4, 4)
    log = _run(dvc + ["exp", "run", *cache, "-S", "seed=1", "evaluate"], repo, env)
    assert "Running stage 'frozen'" not in log and "Running stage 'knn'" not in log and "Running stage 'train'" in log
    _run(dvc + ["exp", "run", "-S", "model.backbone=dinov2_vits14", "-S", "data.res=28", "evaluate"], repo, env)
    _assert_scores_are_the_predictions(repo, 8)


def test_the_study_runs_each_configuration_in_a_copy_of_the_workspace(tmp_path):
    """`python -m stages.study`: real `dvc repro` runs in copies of the workspace (which is left untouched),
    each run recorded; the second configuration's unchanged stages come from DVC's run cache."""
    repo, env = _project(tmp_path)
    params_before = (repo / "params.yaml").read_text()
    _run([sys.executable, "-m", "stages.study", "--seeds", "0", "--only", "defaults,method=notrain"], repo, env)
    runs = [json.loads(line) for line in (repo / "reports/study/runs.jsonl").read_text().splitlines()]
    assert [(r["config"], r["method"]) for r in runs] == [("defaults", "picie"), ("method=notrain", "notrain")]
    for r in runs:
        assert set(r["metrics"]) == {"train", "eval", "probe"}  # the stages up to evaluate and probe
        assert 0 < r["metrics"]["eval"]["acc"] <= 100 and r["metrics"]["probe"]["labelled"] == 1
    assert runs[0]["metrics"]["train"]["epochs"] == 1 and runs[1]["metrics"]["train"]["epochs"] == 0
    assert runs[0]["metrics"]["eval"] != runs[1]["metrics"]["eval"]  # each run's own, not the workspace's
    assert (repo / "params.yaml").read_text() == params_before and not (repo / "metrics/eval.json").exists()
    fidelity = (repo / "reports/fidelity.md").read_text()
    assert "| 1 | PiCIE beats no training (`defaults` vs `method=notrain`) | eval.acc | +21.83 |" in fidelity
    assert "n/a (fewer than 2 paired seeds)" in fidelity
    assert (repo / "reports/study/fidelity.png").is_file() and "(study/fidelity.png)" in fidelity
    # the seeds command runs through the same runner: the defaults at seed 0 again, the study's run's scores
    _run([sys.executable, "-m", "stages.seeds", "--seeds", "0", "--target", "evaluate"], repo, env)
    seeds = json.loads((repo / "metrics/seeds.json").read_text())
    assert seeds["eval.acc_mean"] == round(runs[0]["metrics"]["eval"]["acc"], 4) and seeds["eval.acc_n"] == 1
    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo, env))
    assert not [e for b in shown for e in b.get("experiments") or []]  # no DVC experiment was made
