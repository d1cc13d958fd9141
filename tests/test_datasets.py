"""The real benchmarks' loaders, on tiny fixtures in the official on-disk formats."""
import json

import numpy as np
import pytest
from PIL import Image

from lib.data import DataError, Prepared, pixel_stats, prepare
from lib.data.cocostuff import fine_to_class
from stages import prepare as prepare_stage
from tests import fixtures

# PiCIE's and IIC's 27-class table (docs/datasets.md), transcribed independently of lib/data/cocostuff.py
COARSE_TABLE = """
0 electronic 71-76 | 1 appliance 77-82 | 2 food-things 51-60 | 3 furniture-things 61-70 | 4 indoor 83-90
5 kitchen 43-50 | 6 accessory 25-32 | 7 animal 15-24 | 8 outdoor 9-14 | 9 person 0 | 10 sports 33-42
11 vehicle 1-8 | 12 ceiling 101,102 | 13 floor 100,113-117 | 14 food-stuff 120,121,152,169
15 furniture-stuff 97,106,107,109,111,122,129,132,155,160,164 | 16 rawmaterial 99,131,138,142
17 textile 91,92,103,104,108,130,136,140,151,166,167 | 18 wall 170-176 | 19 window 179,180
20 building 94,95,127,150,157,165 | 21 ground 110,124,125,135,139,143,144,146,148,153,158
22 plant 93,96,118,123,128,133,141,162,168 | 23 sky 105,156 | 24 solid 126,134,149,159,161,181
25 structural 98,112,137,145,163 | 26 water 119,147,154,177,178
"""


def _expected_coarse():
    table = {}
    for entry in COARSE_TABLE.replace("\n", " | ").split("|"):
        if not entry.strip():
            continue
        coarse, _, ids = entry.split()
        for part in ids.split(","):
            lo, _, hi = part.partition("-")
            for f in range(int(lo), int(hi or lo) + 1):
                assert f not in table, f"fine id {f} listed twice"
                table[f] = int(coarse)
    return table


def _run(p, tmp_path, name="prep"):
    out = tmp_path / name
    out.mkdir()
    meta = prepare(p, out)
    return meta, Prepared(out)


# --- COCO-Stuff ---------------------------------------------------------------------------------

def test_every_fine_id_maps_to_its_coarse_class():
    expected = _expected_coarse()
    assert sorted(expected) == list(range(182)), "the table covers all 182 fine ids"
    lut27, ok, _ = fine_to_class("cocostuff27")
    lut15, _, _ = fine_to_class("cocostuff15")
    lut3, _, _ = fine_to_class("cocostuff3")
    for fine, coarse in expected.items():
        assert lut27[fine] == coarse, fine
        assert lut15[fine] == (coarse - 12 if coarse >= 12 else 255), fine
        assert lut3[fine] == {23: 0, 22: 1, 21: 2}.get(coarse, 255), fine
    assert lut27[255] == lut15[255] == lut3[255] == 255 and ok[255]
    assert not ok[182:255].any(), "ids 182-254 are out of range"


def test_curation_rule_at_its_edges(params, tmp_path):
    h, w = 360, 400
    n = h * w
    train = {
        "000000000001": fixtures.stuff_label(h, w, int(0.75 * n)),  # exactly 75 %: kept
        "000000000002": fixtures.stuff_label(h, w, int(0.749 * n)),  # 74.9 %: dropped
        "000000000003": fixtures.stuff_label(359, w, 359 * w),  # a 359 px side, all stuff: dropped
        "000000000004": fixtures.stuff_label(w, 359, 359 * w),  # the other side 359: dropped
        "000000000005": fixtures.stuff_label(h, w, n),  # kept
    }
    root = fixtures.cocostuff(tmp_path / "coco", train, {"000000000009": fixtures.stuff_label(h, w, n)})
    p, _ = params(**{"data.name": "cocostuff27", "data.root": str(root), "data.res": 32, "runtime.workers": 2})
    meta, d = _run(p, tmp_path)
    assert (d.root / "lists" / "train.txt").read_text().split() == ["000000000001", "000000000005"]
    assert meta["splits"] == {"train": 2, "val": 1} and meta["stats"]["train_listed"] == 5
    assert d.images("train").shape == (2, 64, 64, 3) and d.images("train").dtype == np.uint8
    assert d.labels("train").shape == (2, 64, 64) and d.labels("val").shape == (1, 32, 32)
    assert d.labels("val").dtype == np.uint8


def test_cocostuff_variants_map_and_ignore(params, tmp_path):
    root = fixtures.cocostuff_small(tmp_path / "coco")
    common = {"data.root": str(root), "data.min_side": 40, "data.res": 32, "data.train_res": 32}
    _, d27 = _run(params(**common, **{"data.name": "cocostuff27"})[0], tmp_path, "p27")
    _, d15 = _run(params(**common, **{"data.name": "cocostuff15"})[0], tmp_path, "p15")
    _, d3 = _run(params(**common, **{"data.name": "cocostuff3"})[0], tmp_path, "p3")
    assert set(np.unique(d27.labels("val"))) == {9, 22, 23, 255}  # person, plant, sky, unlabeled
    assert d27.meta["things"] == list(range(12)) and d27.meta["stuff"] == list(range(12, 27))
    assert d27.classes[9] == "person" and d27.classes[23] == "sky" and len(d27.classes) == 27
    # 15 and 3: scaled by 0.33 (a 48 x 40 image becomes 16 x 13), padded to 32 with ignored pixels
    lab15 = d15.labels("val")
    assert set(np.unique(lab15)) == {10, 11, 255} and d15.classes[11] == "sky" and d15.meta["things"] == []
    assert (lab15[:, 0, :] == 255).all() and (lab15[:, :, 0] == 255).all(), "padding is ignored"
    assert (d15.images("val")[:, 0, 0] == 0).all()
    assert d3.classes == ["sky", "plant", "ground"] and set(np.unique(d3.labels("val"))) == {0, 1, 255}


def test_cocostuff_id_out_of_range_is_named(params, tmp_path):
    lab = fixtures.stuff_label(40, 48, 40 * 48)
    lab[0, 0] = 200
    root = fixtures.cocostuff(tmp_path / "coco", {"000000000001": lab}, {"000000000002": lab})
    p, _ = params(**{"data.name": "cocostuff27", "data.root": str(root), "data.min_side": 10})
    with pytest.raises(DataError, match=r"annotations/train2017/000000000001.png: label id 200 is outside "
                                        r"the range of COCO-Stuff fine ids"):
        _run(p, tmp_path)


def test_missing_coco_folders_show_the_layout(params, tmp_path):
    (tmp_path / "coco" / "annotations" / "train2017").mkdir(parents=True)
    p, _ = params(**{"data.name": "cocostuff27", "data.root": str(tmp_path / "coco")})
    with pytest.raises(DataError, match=r"coco/images/train2017: folder not found. Expected layout:\n"
                                        r"ROOT/images/train2017/<id>.jpg"):
        _run(p, tmp_path)
    p, _ = params(**{"data.name": "cocostuff27", "data.root": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match=r"nowhere: folder not found. Expected layout"):
        _run(p, tmp_path, "again")


def test_missing_image_of_a_label_is_named(params, tmp_path):
    root = fixtures.cocostuff_small(tmp_path / "coco")
    (root / "images" / "val2017" / "000000000101.jpg").unlink()
    p, _ = params(**{"data.name": "cocostuff27", "data.root": str(root), "data.min_side": 40})
    with pytest.raises(DataError, match=r"val2017/000000000101.jpg: image not found for label"):
        _run(p, tmp_path)


# --- Cityscapes ---------------------------------------------------------------------------------

CITYSCAPES_NAMES = ("road sidewalk parking rail_track building wall fence guard_rail bridge tunnel pole "
                    "polegroup traffic_light traffic_sign vegetation terrain sky person rider car truck bus "
                    "caravan trailer train motorcycle bicycle").split()


@pytest.mark.parametrize("split, sizes, train_labelled", [("picie", {"train": 5, "val": 5}, False),
                                                          ("standard", {"train": 3, "val": 2}, True)])
def test_cityscapes_splits_and_label_ids(params, tmp_path, split, sizes, train_labelled):
    files = fixtures.cityscapes(tmp_path / "cs")
    p, _ = params(**{"data.name": "cityscapes27", "data.root": str(tmp_path / "cs"), "data.split": split,
                     "data.res": 32, "data.train_res": 32})
    meta, d = _run(p, tmp_path)
    assert meta["splits"] == sizes and d.classes == CITYSCAPES_NAMES
    assert (d.labels("train") is not None) == train_labelled
    if split == "picie":
        assert meta["names"]["train"] == [f"{s}_leftImg8bit.png" for s in files["train_extra"] + files["test"]]
    val = np.asarray(d.labels("val"))
    assert set(np.unique(val)) <= set(range(27)) | {255} and {0, 26, 255} <= set(np.unique(val))
    assert d.meta["things"] == list(range(17, 27))  # person .. bicycle have instances


def test_cityscapes_label_mapping_at_full_resolution(params, tmp_path):
    fixtures.cityscapes(tmp_path / "cs", h=32, w=32)
    p, _ = params(**{"data.name": "cityscapes27", "data.root": str(tmp_path / "cs"), "data.split": "standard",
                     "data.res": 32, "data.train_res": 32})
    _, d = _run(p, tmp_path)
    raw = fixtures.cityscapes_label(32, 32, 0)  # the first val image, at its own size: no resizing
    expected = np.where((raw >= 7) & (raw <= 33), raw.astype(int) - 7, 255)
    assert np.array_equal(d.labels("val")[0], expected)


def test_cityscapes_bad_id_and_missing_label_are_named(params, tmp_path):
    fixtures.cityscapes(tmp_path / "cs")
    bad = tmp_path / "cs/gtFine/val/frankfurt/frankfurt_000001_000001_gtFine_labelIds.png"
    Image.fromarray(np.full((32, 64), 40, np.uint8)).save(bad)
    p, _ = params(**{"data.name": "cityscapes27", "data.root": str(tmp_path / "cs"), "data.res": 32})
    with pytest.raises(DataError, match=r"frankfurt_000001_000001_gtFine_labelIds.png: label id 40 is outside "
                                        r"the range of Cityscapes labelIds"):
        _run(p, tmp_path)
    bad.unlink()
    with pytest.raises(DataError, match=r"gtFine_labelIds.png: gtFine label not found for .*leftImg8bit.png"):
        _run(p, tmp_path, "again")
    p, _ = params(**{"data.name": "cityscapes27", "data.root": str(tmp_path / "none")})
    with pytest.raises(DataError, match=r"Expected layout:\nROOT/leftImg8bit/\{train,val,test,train_extra\}"):
        _run(p, tmp_path, "third")


# --- COCO-Persons -------------------------------------------------------------------------------

def test_cocopersons_selection_rule_and_labels(params, tmp_path):
    fixtures.cocopersons(tmp_path / "persons")
    p, _ = params(**{"data.name": "cocopersons", "data.root": str(tmp_path / "persons"), "data.res": 40,
                     "data.person_min_fraction": 0.1, "data.person_max_fraction": 0.9})
    meta, d = _run(p, tmp_path)
    # 2 (5 %) and 3 (96 %) fall outside the thresholds, 5 has no person
    assert meta["names"]["train"] == ["000000000001.jpg", "000000000004.jpg"]
    assert meta["stats"]["train_with_persons"] == 4 and meta["splits"] == {"train": 2, "val": 2}
    assert d.classes == ["non-person", "person"]
    # 40 x 50 -> short side 40: a 50-px-wide image loses 5 columns each side
    train = np.asarray(d.labels("train"))
    assert train.shape == (2, 40, 40) and set(np.unique(train)) == {0, 1}
    assert (train[0, :30, :15] == 1).all() and (train[0, :, 16:] == 0).all()  # polygon 0..20 x 0..30
    assert (train[1, :, :10] == 1).all() and (train[1, :, 10:] == 0).all()  # crowd RLE: columns 0..14
    p, _ = params(**{"data.name": "cocopersons", "data.root": str(tmp_path / "persons"), "data.res": 40,
                     "data.person_min_fraction": 0.0, "data.person_max_fraction": 1.0})
    meta, _ = _run(p, tmp_path, "all")
    assert meta["splits"]["train"] == 4


def test_cocopersons_missing_annotations_show_the_layout(params, tmp_path):
    fixtures.cocopersons(tmp_path / "persons")
    (tmp_path / "persons/annotations/instances_val2017.json").unlink()
    p, _ = params(**{"data.name": "cocopersons", "data.root": str(tmp_path / "persons")})
    with pytest.raises(DataError, match=r"instances_val2017.json: file not found. Expected layout:\n"):
        _run(p, tmp_path)


# --- Potsdam ------------------------------------------------------------------------------------

def test_potsdam_tiles_crops_and_classes(params, tmp_path):
    classes = fixtures.potsdam(tmp_path / "potsdam")
    p, _ = params(**{"data.name": "potsdam", "data.root": str(tmp_path / "potsdam"), "data.res": 40})
    meta, d = _run(p, tmp_path)
    # 800 px tiles -> 4 crops of 400 each; tile 2_13 is an official test tile
    assert meta["splits"] == {"train": 8, "val": 4} and d.channels == 4
    assert d.images("train").shape == (8, 40, 40, 4) and d.labels("val").shape == (4, 40, 40)
    assert d.classes == ["roads", "buildings", "low_vegetation", "tree", "car", "clutter"]
    expected = classes[::10, ::10]  # 400 -> 40: every 10th pixel, nearest
    assert np.array_equal(d.labels("val")[0], expected[:40, :40])
    assert np.array_equal(d.labels("val")[1], expected[:40, 40:])  # crops row by row
    inner = [c for c in range(40) if 2 <= c % 10 <= 7]  # away from the blurred stripe edges
    ir = d.images("val")[0, 0, inner, 3]
    assert np.array_equal(ir, expected[0, inner] * 40), "the IR channel is kept"
    p3, _ = params(**{"data.name": "potsdam3", "data.root": str(tmp_path / "potsdam"), "data.res": 40})
    _, d3 = _run(p3, tmp_path, "p3")
    merge = np.array([0, 1, 2, 2, 0, 1])
    assert np.array_equal(d3.labels("val")[0], merge[expected[:40, :40]])


def test_potsdam_unknown_colour_is_named(params, tmp_path):
    import tifffile

    fixtures.potsdam(tmp_path / "potsdam")
    path = tmp_path / "potsdam/5_Labels_all/top_potsdam_2_11_label.tif"
    lab = tifffile.imread(path)
    lab[5, 5] = (255, 0, 255)
    tifffile.imwrite(path, lab)
    p, _ = params(**{"data.name": "potsdam", "data.root": str(tmp_path / "potsdam"), "data.res": 40})
    with pytest.raises(DataError, match=r"top_potsdam_2_11_label.tif: colour \(255, 0, 255\) is not a Potsdam"):
        _run(p, tmp_path)


# --- the prepare stage --------------------------------------------------------------------------

def test_prepare_stage_reports_counts_and_frequencies(params, tmp_path):
    root = fixtures.cocostuff_small(tmp_path / "coco")
    _, ppath = params(**{"data.name": "cocostuff27", "data.root": str(root), "data.min_side": 40,
                         "data.res": 32})
    out, metrics = tmp_path / "prepared", tmp_path / "prepare.json"
    prepare_stage.main(out=str(out), metrics=str(metrics), params=str(ppath))
    m = json.loads(metrics.read_text())
    assert m["train_images"] == 6 and m["val_images"] == 4 and m["train_listed"] == 6
    assert set(m) >= {"freq_sky", "freq_plant", "freq_person", "freq_water", "ignored_fraction"}
    assert abs(sum(v for k, v in m.items() if k.startswith("freq_")) - 1) < 1e-4
    assert m["freq_sky"] > m["freq_person"] > 0 and m["freq_water"] == 0
    assert m == pixel_stats(Prepared(out))


def test_potsdam_missing_label_tile_and_folder_show_the_layout(params, tmp_path):
    fixtures.potsdam(tmp_path / "potsdam")
    (tmp_path / "potsdam/5_Labels_all/top_potsdam_2_10_label.tif").unlink()
    p, _ = params(**{"data.name": "potsdam", "data.root": str(tmp_path / "potsdam"), "data.res": 40})
    with pytest.raises(DataError, match=r"5_Labels_all/top_potsdam_2_10_label.tif: label tile not found for "
                                        r".*top_potsdam_2_10_RGBIR.tif. Expected layout:\nROOT/4_Ortho_RGBIR/"):
        _run(p, tmp_path)
    p, _ = params(**{"data.name": "potsdam", "data.root": str(tmp_path)})
    with pytest.raises(DataError, match=r"4_Ortho_RGBIR: folder not found. Expected layout"):
        _run(p, tmp_path, "again")
