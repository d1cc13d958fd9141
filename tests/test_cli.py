"""lib/cli: train.allocator's effect on the host memory, measured in page faults."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a training step at a large view size (as COCO's 320 px ones): activations and gradients of 64 MiB each,
# allocated and freed every step; prints what set_allocator said and the page faults of each step after the first.
# Under "reuse" glibc's heap still grows by a block now and then over the first dozen steps, at steps that vary
# from run to run (seen: 2 to 13), so one step's count is not the measure: the typical step's is.
STEPS = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from lib.cli import set_allocator
applied = set_allocator({kind!r})
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU())
x = torch.rand(8, 3, 256, 256)
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults[1:])
"""


def faults(kind):
    out = subprocess.run([sys.executable, "-c", STEPS.format(root=str(ROOT), kind=kind)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", sorted(int(n) for n in out[1:])


def test_reuse_keeps_freed_blocks_instead_of_faulting_them_in_again():
    block = 8 * 32 * 256 * 256 * 4 // 4096  # the 4 KiB pages of one activation (64 MiB)
    applied, system = faults("system")
    assert not applied
    median = system[len(system) // 2]
    assert median >= 2 * block, "glibc's default maps each block above 32 MiB afresh: its pages fault in every step"
    applied, reuse = faults("reuse")
    assert applied
    seen = f"page faults of each step (sorted) with freed blocks reused: {reuse} ({median} a step without)"
    assert reuse[len(reuse) // 2] < block // 10, seen
    # the heap stops growing: all 15 steps together fault in less than one step does without reuse
    assert sum(reuse) < median, seen
