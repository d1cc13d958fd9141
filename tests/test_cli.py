"""lib/cli: train.allocator's effect on the host memory, measured in page faults."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a training step at a large view size (as COCO's 320 px ones): activations and gradients of 64 MiB each,
# allocated and freed every step; prints what set_allocator said and the page faults of a step once warm (glibc's
# heap takes a few steps to hold a free block of every size the step asks for)
STEPS = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from lib.cli import set_allocator
applied = set_allocator({kind!r})
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU())
x = torch.rand(8, 3, 256, 256)
def step():
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def faults(kind):
    out = subprocess.run([sys.executable, "-c", STEPS.format(root=str(ROOT), kind=kind)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


def test_reuse_keeps_freed_blocks_instead_of_faulting_them_in_again():
    block = 8 * 32 * 256 * 256 * 4 // 4096  # the 4 KiB pages of one activation (64 MiB)
    applied, system = faults("system")
    assert not applied
    assert system >= 2 * block, "glibc's default maps each block above 32 MiB afresh: its pages fault in again"
    applied, reuse = faults("reuse")
    assert applied
    assert reuse < block // 10, f"{reuse} page faults a step with freed blocks reused ({system} without)"
