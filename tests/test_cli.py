"""lib/cli: the stages' one setup, and runtime.allocator's effect on where the host's large blocks come from
and where they go.

What it is for, fewer page faults a step, is a measurement of the machine: bench/allocator.py counts them.
Here, what glibc reports (mallinfo2) of one 64 MiB block, the size of an activation at COCO's views."""
import subprocess
import sys

from tests.conftest import ROOT

BLOCK = """
import ctypes, sys, torch
sys.path.insert(0, {root!r})
from lib.cli import set_allocator

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (malloc.h)
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = set_allocator({kind!r})

def info():  # bytes in blocks mapped on their own; bytes of the heap in use, and free in it
    m = libc.mallinfo2()
    return m.hblkhd, m.uordblks, m.fordblks

before = info()
block = torch.empty(16 << 20, dtype=torch.float32)  # 64 MiB
during = info()
del block
after = info()
print(applied, *before, *during, *after)
"""
MIB64 = 64 << 20


def _blocks(kind):
    out = subprocess.run([sys.executable, "-c", BLOCK.format(root=str(ROOT), kind=kind)], capture_output=True,
                         text=True, check=True).stdout.split()
    applied, (mapped0, used0, _, mapped1, used1, _, mapped2, _, free2) = out[0] == "True", map(int, out[1:])
    return applied, mapped1 - mapped0, used1 - used0, mapped2 - mapped0, free2


def test_system_maps_a_large_block_on_its_own_and_unmaps_it_when_freed():
    applied, mapped, from_heap, mapped_after, _ = _blocks("system")
    assert not applied
    assert mapped >= MIB64 and from_heap < MIB64  # its own mapping: every page faulted in afresh
    assert mapped_after == 0  # handed back when freed: the next step's block is mapped and faulted in again


def test_reuse_serves_a_large_block_from_the_heap_and_keeps_it_when_freed():
    applied, mapped, from_heap, mapped_after, free_after = _blocks("reuse")
    assert applied
    assert mapped == 0 and from_heap >= MIB64  # from the heap, not a mapping of its own
    assert mapped_after == 0 and free_after >= MIB64  # freed into the heap, which keeps it for the next step


def test_setup_applies_the_runtime_section_seeds_and_opens_the_data(params, tmp_path):
    import torch

    from lib.cli import setup
    from stages import prepare as prepare_stage

    _, ppath = params(**{"data.train_size": 4, "data.val_size": 2, "data.res": 32, "runtime.threads": 1,
                         "runtime.workers": 3, "runtime.device": "cpu", "seed": 5})
    prepare_stage.main(out=str(tmp_path / "prepared"), metrics=str(tmp_path / "prep.json"), params=str(ppath))
    threads = torch.get_num_threads()
    try:
        s = setup(ppath, str(tmp_path / "prepared"), seeded=True)
        assert s.threads == torch.get_num_threads() == 1 and s.workers == 3 and s.device == torch.device("cpu")
        assert len(s.prepared.images("train")) == 4 and s.p.seed == 5
        first = torch.randint(0, 1000, (4,), generator=s.generator)
        again = setup(ppath, seeded=True)
        assert torch.equal(torch.randint(0, 1000, (4,), generator=again.generator), first)  # the params' seed
        assert again.prepared is None and setup(ppath).generator is None  # only what is asked for
    finally:
        torch.set_num_threads(threads)


def test_setup_without_compute_imports_no_torch(params):
    _, ppath = params()
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from lib.cli import setup; "
            f"s = setup({str(ppath)!r}, compute=False); print(s.device, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["None", "False"]
