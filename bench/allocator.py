"""Page faults of a training step under each `runtime.allocator`, counted, not asserted (not a test).

    python bench/allocator.py                 # 16 steps, 8 x 3 x 256 x 256 inputs, each allocator 5 times

A step at a large view size (as COCO's 320 px ones) allocates and frees
activations and gradients of 64 MiB each. Under `system` glibc maps every
block above its mmap threshold afresh and unmaps it when freed, so each page
is faulted in (and zero-filled by the kernel) again every step; under `reuse`
(lib/cli.set_allocator) freed blocks serve the next step. Each allocator runs
in fresh processes (set once, "reuse" holds for the rest of a process); the
script prints each run's page faults per step after the first, and their
median. What it measures depends on the machine's glibc and on the heap's
growth, which under `reuse` happens now and then over the first dozen steps
at steps that vary from run to run: a count, to read, not a bound to assert
(tests/test_cli.py tests the behaviour: where the blocks come from).
"""
import statistics
import subprocess
import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]

STEPS = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from lib.cli import set_allocator
applied = set_allocator({kind!r})
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU())
x = torch.rand(8, 3, {side}, {side})
faults = []
for _ in range({steps}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults[1:])
"""


def faults(kind, steps, side):
    """(whether the allocator took effect, page faults of each step after the first) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", STEPS.format(root=str(ROOT), kind=kind, steps=steps, side=side)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", [int(n) for n in out[1:]]


def main(steps: int = 16, side: int = 256, runs: int = 5):
    block = 8 * 32 * side * side * 4 // 4096
    print(f"one activation: {block} pages of 4 KiB; {steps} steps, the first left out; {runs} runs each")
    for kind in ("system", "reuse"):
        for run in range(runs):
            applied, counts = faults(kind, steps, side)
            print(f"{kind:6s} run {run}: took effect {applied}, median {statistics.median(counts):>9,.0f} a step, "
                  f"sum {sum(counts):>10,}: {counts}")


if __name__ == "__main__":
    typer.run(main)
