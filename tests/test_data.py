import json

import numpy as np
import pytest
from PIL import Image

from lib.data import Prepared, pixel_stats, prepare
from lib.data.base import DataError
from lib.data.textures import CLASSES, STUFF
from stages import prepare as prepare_stage


def _folder(root, n=5, size=(40, 30), labels=True, classes=("sky", "tree", "car"), things=("car",)):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    if labels:
        (root / "labels").mkdir()
    for i in range(n):
        w, h = size
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        if labels:
            lab = rng.integers(0, len(classes), (h, w), dtype=np.uint8)
            lab[0, 0] = 255
            Image.fromarray(lab).save(root / "labels" / f"im{i}.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    if things:
        (root / "things.txt").write_text("\n".join(things) + "\n")
    return root


def test_textures_prepare_shapes_and_classes(params, tmp_path):
    p, _ = params(**{"data.train_size": 6, "data.val_size": 4, "data.res": 64})
    out = tmp_path / "prep"
    out.mkdir()
    meta = prepare(p, out)
    d = Prepared(out)
    assert d.images("train").shape == (6, 64, 64, 3) and d.images("train").dtype == np.uint8
    assert d.labels("val").shape == (4, 64, 64) and d.labels("val").dtype == np.uint8
    assert meta["classes"] == list(CLASSES)
    assert meta["stuff"] == list(range(len(STUFF))) and meta["things"] == list(range(len(STUFF), len(CLASSES)))
    assert set(np.unique(d.labels("train"))) <= set(range(len(CLASSES)))
    stats = pixel_stats(d)
    assert stats["train_images"] == 6 and abs(sum(stats[f"freq_{c}"] for c in CLASSES) - 1) < 1e-4


def test_folder_prepare_resizes_crops_and_splits(params, tmp_path):
    root = _folder(tmp_path / "ds")
    p, _ = params(**{"data.name": "folder", "data.root": str(root), "data.res": 32, "data.val_fraction": 0.4})
    out = tmp_path / "prep"
    out.mkdir()
    meta = prepare(p, out)
    d = Prepared(out)
    assert meta["splits"] == {"val": 2, "train": 3}
    assert d.images("train").shape == (3, 32, 32, 3) and d.labels("val").shape == (2, 32, 32)
    assert meta["classes"] == ["sky", "tree", "car"] and meta["things"] == [2] and meta["stuff"] == [0, 1]
    assert set(np.unique(d.labels("train"))) <= {0, 1, 2, 255}
    assert sorted(meta["names"]["train"] + meta["names"]["val"]) == [f"im{i}.png" for i in range(5)]


def test_folder_without_labels_or_class_list(params, tmp_path):
    root = _folder(tmp_path / "ds", labels=False, classes=None, things=None)
    p, _ = params(**{"data.name": "folder", "data.root": str(root), "data.res": 32, "cluster.k": 3})
    out = tmp_path / "prep"
    out.mkdir()
    meta = prepare(p, out)
    assert meta["labelled"] is False and Prepared(out).labels("val") is None and meta["classes"] == []


def _expect_error(params, tmp_path, root, pattern):
    p, ppath = params(**{"data.name": "folder", "data.root": str(root), "data.res": 32, "cluster.k": 3})
    out, metrics = tmp_path / "out" / "prepared", tmp_path / "out" / "prepare.json"
    with pytest.raises(SystemExit) as e:
        prepare_stage.main(out=str(out), metrics=str(metrics), params=str(ppath))
    assert e.value.code == 1
    assert not out.exists() and not metrics.exists()
    assert not list((tmp_path / "out").glob(".*")), "temporary output left behind"
    with pytest.raises(DataError, match=pattern):
        tmp = tmp_path / "direct"
        tmp.mkdir(exist_ok=True)
        prepare(p, tmp)


def test_corrupt_image_is_named(params, tmp_path):
    root = _folder(tmp_path / "ds")
    (root / "images" / "im3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _expect_error(params, tmp_path, root, r"im3.png: cannot read this image")


def test_label_of_the_wrong_size_is_named(params, tmp_path):
    root = _folder(tmp_path / "ds")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "labels" / "im2.png")
    _expect_error(params, tmp_path, root, r"labels/im2.png: label is 10x10 but its image .*im2.png is 40x30")


def test_class_id_above_the_class_count_is_named(params, tmp_path):
    root = _folder(tmp_path / "ds")
    Image.fromarray(np.full((30, 40), 7, np.uint8)).save(root / "labels" / "im1.png")
    _expect_error(params, tmp_path, root, r"labels/im1.png: label id 7 is outside the range of .*classes.txt \(3 classes")


def test_empty_and_missing_folders_are_named(params, tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    _expect_error(params, tmp_path, tmp_path / "empty", r"empty/images: no images")
    _expect_error(params, tmp_path, tmp_path / "nowhere", r"nowhere/images: folder not found")


def test_prepare_stage_writes_flat_metrics(params, tmp_path):
    _, ppath = params(**{"data.train_size": 4, "data.val_size": 2, "data.res": 32})
    out, metrics = tmp_path / "prepared", tmp_path / "prepare.json"
    prepare_stage.main(out=str(out), metrics=str(metrics), params=str(ppath))
    m = json.loads(metrics.read_text())
    assert m["train_images"] == 4 and m["val_images"] == 2
    assert all(isinstance(v, (int, float)) for v in m.values())
