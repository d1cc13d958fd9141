"""Atomic writes: the user's file modes, identical bytes for identical objects, no leftovers."""
import hashlib
import os
import stat

import pytest
import torch

from lib.checkpoint import save
from lib.io import atomic_dir, atomic_path, remove_stale


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                      (0o002, 0o664, 0o775)])
def test_outputs_get_the_users_mode_not_the_temporary_files_private_one(tmp_path, umask, mask, file_mode,
                                                                          dir_mode):
    umask(mask)
    with atomic_path(tmp_path / "out" / "labels.png") as tmp:
        tmp.write_bytes(b"png")
    with atomic_dir(tmp_path / "prepared") as tmp:
        (tmp / "x").write_text("x")
    assert stat.S_IMODE((tmp_path / "out" / "labels.png").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "prepared").stat().st_mode) == dir_mode


def test_the_same_object_saved_under_two_names_has_the_same_bytes(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "note": "x"}
    save(obj, tmp_path / "a.pt")
    save(obj, tmp_path / "b.pt")  # a different temporary name each time, and a different final one
    digests = {hashlib.md5((tmp_path / n).read_bytes()).hexdigest() for n in ("a.pt", "b.pt")}
    assert len(digests) == 1
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True)["w"], obj["w"])


def test_a_killed_writers_temporaries_are_removed_by_the_next_write_and_nothing_else(tmp_path):
    (tmp_path / ".model.pt.ab12cd_9.pt").write_bytes(b"half")  # mkstemp's leftover
    (tmp_path / ".prepared.x0y1z2w3").mkdir()  # mkdtemp's, with content
    (tmp_path / ".prepared.x0y1z2w3" / "train.npy").write_bytes(b"0" * 100)
    (tmp_path / ".prepared.old").mkdir()  # atomic_dir's swap
    keep = [".model.pt.notes", ".model.pt.ab12cd_9.pt.bak", ".model.pth.ab12cd_9.pt", "model.pt.ab12cd_9.pt",
            ".prepared.json", ".prepared.x0y1z2w3.txt"]
    for name in keep:
        (tmp_path / name).write_text("someone else's")
    with atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"model")
    with atomic_dir(tmp_path / "prepared") as tmp:
        (tmp / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["model.pt", "prepared"])
    remove_stale(tmp_path / "absent" / "model.pt")  # a folder not there yet: nothing to do, no error
