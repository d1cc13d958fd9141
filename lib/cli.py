"""What every stage script shares: its setup (`setup`: params, where it computes, seeds, the prepared data)
and one-line errors.

torch is imported by the functions that use it, not here: the `fingerprint`
stage runs on every `dvc repro` and needs only the params, and importing
torch is most of the time such a stage would take."""
import contextlib
import ctypes
import functools
import os
import random
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np

from lib.config import load_params
from lib.errors import DataError, DistributedError, ParamsError, WeightsError

USER_ERRORS = (ParamsError, DataError, WeightsError, FloatingPointError, DistributedError)


def user_errors(fn):
    """Turn bad input into one clear line on stderr and exit status 1, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    return wrapper


@dataclass
class Setup:
    """What a stage starts from: its params and, where it computes, the device, the threads it got, the
    processes of its per-image work, the training seed's generator and the prepared data."""
    p: SimpleNamespace
    device: Any = None  # torch.device
    threads: int = 0
    workers: int = 1
    generator: Any = None  # a torch.Generator of the params' seed, where asked
    prepared: Any = None  # lib.data.Prepared


def setup(params="params.yaml", data: Optional[str] = None, compute=True, seeded=False):
    """The one preamble of every stage: params.yaml read and validated; with `compute`, the runtime
    section applied (threads of torch and faiss, the host allocator, the device: no stage lists them as
    DVC params, for they decide where and how fast it computes, not what); `seeded`: Python's, NumPy's
    and torch's generators seeded with the params' seed, and a torch.Generator of it; with `data`, the
    prepared folder opened. Without `compute` torch is not imported."""
    p = load_params(params)
    s = Setup(p, workers=n_workers(p.runtime.workers))
    if compute:
        s.threads = set_threads(p.runtime.threads)
        set_allocator(p.runtime.allocator)
        s.device = pick_device(p.runtime.device)
        if seeded:
            s.generator = seed_everything(p.seed)
    if data is not None:
        from lib.data import Prepared

        s.prepared = Prepared(data)
    return s


def n_workers(requested):
    """runtime.workers: 0 means every core this process may use."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pick_device(name):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("runtime.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


def set_threads(n):
    """runtime.threads: the CPU threads of torch and faiss (0: torch's default, the machine's cores or
    OMP_NUM_THREADS). Results are bit-identical only at the same count (a reduction split differently
    rounds differently); train.json records the count used."""
    import torch

    if n:
        torch.set_num_threads(n)
        with contextlib.suppress(ImportError):
            import faiss

            faiss.omp_set_num_threads(n)
    return torch.get_num_threads()


# glibc's mallopt parameters (malloc.h): no block mapped on its own; the heap's top never handed back
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
REUSE = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2 ** 31 - 1}


def set_allocator(kind):
    """runtime.allocator: how the host's freed memory is kept. Returns whether "reuse" took effect.

    "system" leaves glibc's defaults: a block above its mmap threshold (at most
    32 MiB) is mapped afresh on each allocation and unmapped when freed, so
    every training step page-faults its large activations and gradients in
    again, each page zero-filled by the kernel (one 320 px view's features
    are 100 MiB). "reuse" serves every block from the heap and keeps what is
    freed for the next step: the same arithmetic; a faster training pass on a
    CPU at COCO's geometry (bench/coco_scale.py --compare-allocator measures
    it, docs/speed.md), at small views about the same (their blocks are under
    the threshold); the
    process holds on to its peak instead of returning it between steps.
    Without glibc, nothing changes.
    Once "reuse" is set, "system" does not restore the defaults (mallopt
    switches off glibc's self-tuning threshold for good): one per process."""
    if kind == "system":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in REUSE.items())
    except (OSError, AttributeError):
        return False


def seed_everything(seed):
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
