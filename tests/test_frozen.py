"""The frozen stage's cache of the frozen trunk's features: what it holds, how it is read, the disk check,
and STEGO trained on it against STEGO recomputing its trunk."""
import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch

from lib import frozen, methods
from lib.data.textures import make_split
from lib.errors import DataError
from lib.features import to_tensor
from lib.methods.stego import FiveCrops, neighbours, train_one_epoch
from lib.transforms import resize
from stages import frozen as frozen_stage
from stages import prepare as prepare_stage
from tests.conftest import tiny_params

TINY = {"method": "stego", "data.res": 32, "data.train_size": 8, "data.val_size": 4, "model.dim": 8,
        "stego.dim": 6, "stego.samples": 3, "stego.knn": 2, "stego.negatives": 2, "train.batch_size": 4,
        "frozen.cache": True}


def _net(p):
    torch.manual_seed(0)
    return methods.build(p)


def test_the_cache_holds_the_trunks_levels_of_the_crops_and_is_read_alike_from_memory_and_disk(tmp_path,
                                                                                              monkeypatch):
    p, _ = tiny_params(tmp_path, **TINY)
    model = _net(p)
    images = make_split(3, 64, 0)[0]
    crops = FiveCrops(images, p.stego.crop_ratio)
    need = frozen.write(tmp_path / "f.h5", model.net, {"train": crops, "val": images[:2]}, 32, 4, "cpu", "float16")
    with torch.no_grad():
        levels = model.net.eval().trunk(resize(to_tensor(crops[np.arange(15)], "cpu"), 32))
    assert need == 2 * sum(t[0].numel() for t in levels) * 17  # float16: 2 bytes, 15 crops + 2 images
    ids = np.array([7, 2, 7, 14])  # unsorted, one twice: a batch of crops and partners
    cache = frozen.Cache(tmp_path / "f.h5", "train", expected=15)
    got = cache.levels(ids, "cpu")
    assert [t.shape for t in got] == [(4, *t.shape[1:]) for t in levels] and cache.arrays is not None
    for cached, computed in zip(got, levels):  # within float16's rounding (relative 2^-11)
        assert torch.allclose(cached, computed[ids], rtol=2 ** -10, atol=1e-4)
    monkeypatch.setattr(frozen, "IN_MEMORY_BYTES", 0)  # too large for memory: read from the file
    from_disk = frozen.Cache(tmp_path / "f.h5", "train")
    assert from_disk.arrays is None
    assert all(torch.equal(a, b) for a, b in zip(from_disk.levels(ids, "cpu"), got))
    with pytest.raises(DataError, match="15 cached train images, the run has 20; run `dvc repro frozen`"):
        frozen.Cache(tmp_path / "f.h5", "train", expected=20)


def test_a_cache_the_disk_cannot_hold_is_one_line_naming_the_sizes_and_writes_nothing(tmp_path, monkeypatch,
                                                                                     capsys):
    p, ppath = tiny_params(tmp_path, **TINY)
    prepare_stage.main(out=str(tmp_path / "prepared"), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 1000))
    with pytest.raises(SystemExit) as e:
        frozen_stage.main(data=str(tmp_path / "prepared"), out=str(tmp_path / "f.h5"), params=str(ppath))
    out, err = capsys.readouterr()
    assert e.value.code == 1 and "Traceback" not in err and not (tmp_path / "f.h5").exists()
    assert "GiB ->" in out  # the size, said before anything is written
    assert f"error: {tmp_path / 'f.h5'}: the frozen features need 0.0 GiB and {tmp_path} has 0.0 GiB free" in err
    assert "frozen.cache: false" in err


def test_without_the_cache_the_stage_writes_an_empty_file_and_no_method_reads_one(tmp_path, capsys):
    p, ppath = tiny_params(tmp_path, **{**TINY, "frozen.cache": False})
    frozen_stage.main(data=str(tmp_path / "none"), out=str(tmp_path / "f.h5"), params=str(ppath))
    assert "frozen.cache is off: nothing cached" in capsys.readouterr().out
    with pytest.raises(DataError, match="no cached train features in it; run `dvc repro frozen`"):
        frozen.Cache(tmp_path / "f.h5", "train")
    picie, _ = tiny_params(tmp_path, **{**TINY, "method": "picie", "model.freeze": True})
    assert not methods.cached(picie) and not methods.cached(p)  # PiCIE's views are new every step


@pytest.mark.parametrize("dtype, rel", [("float16", 2e-3), ("float32", 1e-5)])
def test_stego_learns_alike_on_the_cache_and_on_its_own_trunk(tmp_path, dtype, rel):
    """The same seed, the same crops, partners and positions: with the cache the per-epoch losses are those
    of recomputing the trunk every step, to within the cache's rounding of the features: float16 moved
    them by 8e-4 relative at most on this machine (2e-3 allowed), float32 by nothing (bit for bit; 1e-5
    allowed for kernels that block another batch size otherwise); the neighbours from the cache are the
    recomputed ones."""
    p, _ = tiny_params(tmp_path, **{**TINY, "model.weights": "imagenet", "train.lr": 0.005})
    images, labels = make_split(8, 64, 0)
    crops = FiveCrops(images, p.stego.crop_ratio)
    model = _net(p)
    frozen.write(tmp_path / "f.h5", model.net, {"train": crops, "val": images[:1]}, 32, 8, "cpu", dtype)
    cache = frozen.Cache(tmp_path / "f.h5", "train", expected=len(crops))
    knn = neighbours(model, images, p, torch.device("cpu"))
    assert np.array_equal(neighbours(model, images, p, torch.device("cpu"), cache), knn)
    curves = {}
    for name, source in (("recomputed", None), ("cached", cache)):
        torch.manual_seed(1)
        net = methods.build(p)
        if source is not None:  # on the cache the trunk never runs
            net.net.trunk = lambda x: pytest.fail("the trunk ran although its features are cached")
        optimizer = torch.optim.Adam(methods.param_groups(net, p), lr=p.train.lr)
        g = torch.Generator().manual_seed(3)
        curves[name] = [train_one_epoch(net, images, optimizer, p, g, torch.device("cpu"), e, labels, knn,
                                        frozen=source)[0] for e in range(3)]
    for a, b in zip(curves["recomputed"], curves["cached"]):
        assert set(a) == set(b)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-6), (key, a[key], b[key])
    assert curves["cached"][-1]["loss"] < curves["cached"][0]["loss"]  # it learns
