"""The `predict` command on a folder of images of any size, one of them corrupt."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from lib.checkpoint import save_model
from lib.clustering import prototype_classifier
from lib.models import build_model
from stages import predict
from tests.conftest import ROOT


def _run_dir(tmp_path, mapping=None):
    """A trained run: the raw-colour model, 3 centroids (red, green, blue), optionally scored."""
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    save_model(build_model("rgb"), run / "models/model.pt",
               {"data": {"res": 32}, "method": "picie", "model": {"classifier": "prototype"}})
    np.save(run / "models/classifier.npy", prototype_classifier(torch.eye(3) * 0.9).numpy())
    if mapping is not None:
        (run / "results").mkdir()
        (run / "results/evaluation.json").write_text(json.dumps(
            {"classes": ["sky", "grass", "sea", "sand"], "mapping": mapping, "histogram": []}))
    return run


def _images(folder):
    folder.mkdir()
    sizes = {"wide": (90, 40), "tall": (30, 70), "square": (50, 50)}
    for name, (w, h) in sizes.items():
        a = np.zeros((h, w, 3), dtype=np.uint8)
        a[:, : w // 2, 0] = 250  # red left half
        a[:, w // 2:, 1] = 250  # green right half
        Image.fromarray(a).save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return sizes


def _predict(run, images, out, capsys):
    predict.main([str(images)], out=str(out), model_path=str(run / "models/model.pt"),
                 classifier=str(run / "models/classifier.npy"), evaluation=str(run / "results/evaluation.json"),
                 batch_size=2, device="cpu", res=0)
    return capsys.readouterr()


def test_predict_writes_every_readable_image_and_reports_the_corrupt_one(tmp_path, capsys):
    run = _run_dir(tmp_path, mapping=[1, 0, -1])  # cluster 0 (red) -> grass, 1 (green) -> sky, 2 unmatched
    sizes = _images(tmp_path / "photos")
    out = tmp_path / "pred"
    captured = _predict(run, tmp_path / "photos", out, capsys)
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    assert "3 segmented" in captured.out and "1 skipped" in captured.out
    assert "broken.jpg" in (out / "skipped.txt").read_text()
    for name, (w, h) in sizes.items():
        lab = np.asarray(Image.open(out / "labels" / f"{name}.png"))
        assert lab.shape == (h, w), name  # at the image's own size
        # matched class ids: red -> cluster 0 -> grass (1), green -> cluster 1 -> sky (0)
        assert lab[h // 2, 2] == 1 and lab[h // 2, w - 3] == 0, name
        overlay = Image.open(out / "overlays" / f"{name}.jpg")
        assert overlay.size[0] == w and overlay.size[1] > h  # the legend strip below
    assert not list(out.glob("**/.*")), "temporary files left behind"


def test_predict_without_evaluation_writes_cluster_ids(tmp_path, capsys):
    run = _run_dir(tmp_path)
    _images(tmp_path / "photos")
    out = tmp_path / "pred"
    _predict(run, tmp_path / "photos", out, capsys)
    lab = np.asarray(Image.open(out / "labels/wide.png"))
    assert lab[20, 2] == 0 and lab[20, 87] == 1


def test_predict_on_nothing_is_a_clear_error(tmp_path, capsys):
    run = _run_dir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        _predict(run, tmp_path / "empty", tmp_path / "pred", capsys)
    assert e.value.code == 1
    assert "empty: no images" in capsys.readouterr().err


def test_predict_finds_the_runs_files_where_dvc_yaml_names_them(tmp_path, capsys, monkeypatch):
    """Without --model-path etc., the files are the train, cluster and evaluate stages' outputs as their
    cmds in dvc.yaml name them (here laid out as dvc.yaml says, in a project folder)."""
    run = _run_dir(tmp_path, mapping=[1, 0, -1])
    shutil.copy(ROOT / "dvc.yaml", run / "dvc.yaml")
    shutil.copy(ROOT / "params.yaml", run / "params.yaml")  # its eval section: how pixels are labelled
    _images(tmp_path / "photos")
    monkeypatch.chdir(run)
    predict.main([str(tmp_path / "photos")], out=str(tmp_path / "pred"), model_path="", classifier="",
                 evaluation="", batch_size=2, device="cpu", res=0)
    assert "named by results/evaluation.json" in capsys.readouterr().out
    lab = np.asarray(Image.open(tmp_path / "pred/labels/wide.png"))
    assert lab[20, 2] == 1 and lab[20, 87] == 0  # matched class ids, from the evaluation it found


def test_predict_with_flip_and_crf_labels_each_image_at_its_own_size(tmp_path, capsys):
    """--flip --crf (eval.flip, eval.crf): the raw-colour model's prototypes on the half red, half green
    images, refined by the CRF at the resized size, then upsampled to each photo's own."""
    run = _run_dir(tmp_path, mapping=[1, 0, -1])
    sizes = _images(tmp_path / "photos")
    out = tmp_path / "pred"
    predict.main([str(tmp_path / "photos")], out=str(out), model_path=str(run / "models/model.pt"),
                 classifier=str(run / "models/classifier.npy"), evaluation=str(run / "results/evaluation.json"),
                 batch_size=2, device="cpu", res=0, flip=True, crf=True, params=str(ROOT / "params.yaml"))
    captured = capsys.readouterr()
    assert "labelled with flip averaging + dense CRF (10 iterations)" in captured.out
    assert "3 segmented" in captured.out
    for name, (w, h) in sizes.items():
        lab = np.asarray(Image.open(out / "labels" / f"{name}.png"))
        assert lab.shape == (h, w), name
        assert lab[h // 2, 2] == 1 and lab[h // 2, w - 3] == 0, name
