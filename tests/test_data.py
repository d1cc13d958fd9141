import json
import struct
import zlib

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


def png_bytes(pixels, colour_type):
    """A PNG written by hand (Pillow cannot write 16-bit colour): pixels (h, w[, c]) uint8 or uint16,
    colour type 0 grey, 2 RGB, 4 grey + alpha; the bit depth is the array's."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = pixels.shape[:2]
    depth = pixels.dtype.itemsize * 8
    rows = pixels.astype(pixels.dtype.newbyteorder(">")).reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("colour_type, channels", [(0, None), (2, 3), (4, 2)])
def test_16_bit_images_keep_their_range(params, tmp_path, colour_type, channels):
    """A 16-bit photograph is rescaled (65535 -> 255), not clipped at 255 into a white image."""
    root = _folder(tmp_path / "ds", n=3, size=(32, 32), labels=False, classes=None, things=None)
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).round().astype(np.uint16)
    pixels = ramp if channels is None else np.stack([ramp] * channels, -1)
    if colour_type == 4:
        pixels[..., 1] = 65535  # opaque
    for i in range(3):
        (root / "images" / f"im{i}.png").write_bytes(png_bytes(pixels, colour_type))
    p, _ = params(**{"data.name": "folder", "data.root": str(root), "data.res": 32, "cluster.k": 3})
    out = tmp_path / "prep"
    out.mkdir()
    prepare(p, out)
    image = Prepared(out).images("val")[0]
    want = np.rint(ramp / 257.0)  # 8-bit of the same ramp, +-1 for Pillow's high-byte reading of colour
    assert np.abs(image.astype(float) - want[..., None]).max() <= 1
    assert (image == 255).mean() < 0.01


def test_an_image_of_no_fixed_range_is_refused_by_name(params, tmp_path):
    root = _folder(tmp_path / "ds", labels=False, classes=None, things=None)
    (root / "images" / "im1.png").unlink()
    Image.fromarray(np.full((30, 40), 3.5, np.float32)).save(root / "images" / "im1.tif")
    (root / "images" / "im1.tif").rename(root / "images" / "im1.png")  # a float TIFF under a PNG name
    _expect_error(params, tmp_path, root, r"im1.png: floating-point pixels \(mode F\) have no fixed range")


@pytest.mark.parametrize("text, message", [
    ("sky\n\ntree\ncar\n", r"classes.txt: line 2 is blank"),
    ("\nsky\ntree\ncar\n", r"classes.txt: line 1 is blank"),
    ("sky\ntree\nsky\n", r"classes.txt: line 3 repeats 'sky' \(line 1\)"),
    ("\n\n", r"classes.txt: empty")])
def test_a_class_list_that_would_shift_ids_is_refused_naming_the_line(params, tmp_path, text, message):
    root = _folder(tmp_path / "ds")
    (root / "classes.txt").write_text(text)
    _expect_error(params, tmp_path, root, message)


def test_trailing_blank_lines_of_the_class_list_are_fine(params, tmp_path):
    root = _folder(tmp_path / "ds")
    (root / "classes.txt").write_text("sky\ntree\ncar\n\n  \n")
    p, _ = params(**{"data.name": "folder", "data.root": str(root), "data.res": 32})
    (tmp_path / "prep").mkdir()
    assert prepare(p, tmp_path / "prep")["classes"] == ["sky", "tree", "car"]


def test_a_folder_of_one_image_warns_that_training_and_validation_overlap(params, tmp_path, capsys):
    root = _folder(tmp_path / "ds", n=1)
    p, _ = params(**{"data.name": "folder", "data.root": str(root), "data.res": 32})
    (tmp_path / "prep").mkdir()
    meta = prepare(p, tmp_path / "prep")
    assert meta["names"]["train"] == meta["names"]["val"] == ["im0.png"]
    err = capsys.readouterr().err
    assert "warning: " in err and "ds/images: one image" in err and "training and validation" in err
    _folder(tmp_path / "two", n=2)
    p, _ = params(**{"data.name": "folder", "data.root": str(tmp_path / "two"), "data.res": 32})
    (tmp_path / "prep2").mkdir()
    prepare(p, tmp_path / "prep2")
    assert "warning" not in capsys.readouterr().err  # two images: disjoint splits, no warning


def test_textures_prepare_follows_data_imbalance(params, tmp_path):
    counts = {}
    for imbalance in (1, 20):
        p, _ = params(**{"data.train_size": 30, "data.val_size": 4, "data.res": 32, "data.imbalance": imbalance})
        out = tmp_path / f"prep{imbalance}"
        out.mkdir()
        counts[imbalance] = np.array(prepare(p, out)["pixel_counts"]["train"][:len(CLASSES)])
    assert counts[20][7] < counts[1][7] / 2 and counts[20][0] > counts[1][0]  # star rarer, brick commoner
