"""lib/cli: train.allocator's effect on where the host's large blocks come from and where they go.

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
