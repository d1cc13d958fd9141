"""The fingerprint stage: what the dataset reads under data.root, listed without torch and without loops."""
import json
import os
import subprocess
import sys

import pytest

from lib.config import as_dict
from lib.data import DATASETS, reads as dataset_reads
from lib.data.fingerprint import fingerprint
from tests import fixtures
from tests.conftest import ROOT


def _data(params, name, root, **kw):
    own = {f"data.{key}": value for key, value in kw.items()}
    p, _ = params(**{"data.name": name, "data.root": str(root), "cluster.k": 4, **own})
    return as_dict(p.data)


def test_only_the_files_the_dataset_reads_count(params, tmp_path):
    root = fixtures.cocostuff_small(tmp_path / "coco")
    data = _data(params, "cocostuff27", root)
    before = fingerprint(data)
    assert before["files"] == 2 * (6 + 4)  # images and label maps of both splits
    (root / "README.txt").write_text("notes")  # unrelated files under the root
    (root / "images" / "test2017").mkdir()
    (root / "images" / "test2017" / "1.jpg").write_bytes(b"x")
    (root / ".cache").mkdir()
    assert fingerprint(data) == before
    (root / "images" / "val2017" / "000000000100.jpg").write_bytes(b"changed")  # a file it reads
    assert fingerprint(data)["digest"] != before["digest"]


def test_what_cityscapes_reads_follows_the_split(params, tmp_path):
    root = tmp_path / "city"
    fixtures.cityscapes(root)
    picie, standard = _data(params, "cityscapes27", root), _data(params, "cityscapes27", root, split="standard")
    # picie: leftImg8bit of train_extra, test, train, val (3 + 2 + 3 + 2) and gtFine of train, val
    assert fingerprint(picie)["files"] == 10 + 5
    assert fingerprint(standard)["files"] == 5 + 5  # leftImg8bit and gtFine of train and val


def _folder(root, n=3):
    (root / "images").mkdir(parents=True)
    for i in range(n):
        (root / "images" / f"p{i}.png").write_bytes(bytes(i + 1))
    return root


def test_a_link_loop_lists_each_file_once(params, tmp_path):
    root = _folder(tmp_path / "mine")
    os.symlink(root / "images", root / "images" / "again")  # images/again/again/... points back
    os.symlink(root, root / "images" / "up")  # and one to the root itself
    fp = fingerprint(_data(params, "folder", root))
    assert fp["files"] == 3 and fp["bytes"] == 1 + 2 + 3


def test_a_linked_folder_is_followed_and_a_dangling_link_listed(params, tmp_path):
    store = _folder(tmp_path / "disk")
    root = tmp_path / "mine"
    root.mkdir()
    os.symlink(store / "images", root / "images")  # the images live on another disk
    data = _data(params, "folder", root)
    fp = fingerprint(data)
    assert fp["files"] == 3
    os.symlink(tmp_path / "nowhere.png", store / "images" / "broken.png")
    assert fingerprint(data)["digest"] != fp["digest"]


def test_a_missing_folder_the_dataset_reads_counts_once_it_appears(params, tmp_path):
    root = _folder(tmp_path / "mine")
    data = _data(params, "folder", root)
    before = fingerprint(data)
    (root / "labels").mkdir()
    assert fingerprint(data)["digest"] != before["digest"]  # an empty labels/ is a change: prepare reads it


def test_every_dataset_but_the_embedded_one_reads_under_its_root(params):
    for name, module in DATASETS.items():
        reads = dataset_reads({**_data(params, "textures", ""), "name": name})
        assert bool(reads) == module.PROTOCOLS[name].root, name
        assert all(not os.path.isabs(r) and ".." not in r for r in reads), name


def test_the_fingerprint_stage_runs_with_torch_unimportable(tmp_path):
    """DVC runs it on every `dvc repro`: reading params.yaml must not start torch (~2 s)."""
    root = _folder(tmp_path / "mine")
    params = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text().replace('root: ""', f'root: "{root}"')
    params.write_text(text.replace("name: textures", "name: folder").replace("k: auto", "k: 4"))
    out = tmp_path / "fingerprint.json"
    code = ("import sys; sys.modules['torch'] = None  # `import torch` now raises ImportError\n"
            "from stages.fingerprint import main\n"
            f"main(out={str(out)!r}, params={str(params)!r})\n"
            "assert sys.modules['torch'] is None\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["files"] == 3


@pytest.mark.parametrize("name", ["cocostuff27", "potsdam"])
def test_a_root_that_is_not_a_folder_is_named(params, tmp_path, name):
    from lib.data import DataError

    with pytest.raises(DataError, match=f"{tmp_path / 'none'}: data.root is not a folder"):
        fingerprint(_data(params, name, tmp_path / "none"))
