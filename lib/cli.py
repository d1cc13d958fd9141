"""What every stage script shares: one-line errors, device choice, seeding.

torch is imported by the functions that use it, not here: the `fingerprint`
stage runs on every `dvc repro` and needs only `user_errors`, and importing
torch is ~2.5 s of its ~3 s."""
import contextlib
import ctypes
import functools
import random
import sys

import numpy as np

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


def pick_device(name):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


def set_threads(n):
    """train.threads: the CPU threads of torch and faiss (0: torch's default, the machine's cores or
    OMP_NUM_THREADS). Results are bit-identical only at the same count (a reduction split differently
    rounds differently): the count is a param, and train.json records the one used."""
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
    """train.allocator: how the host's freed memory is kept. Returns whether "reuse" took effect.

    "system" leaves glibc's defaults: a block above its mmap threshold (at most
    32 MiB) is mapped afresh on each allocation and unmapped when freed, so
    every training step page-faults its large activations and gradients in
    again, each page zero-filled by the kernel (one 320 px view's features
    are 100 MiB). "reuse" serves every block from the heap and keeps what is
    freed for the next step: the same arithmetic; at COCO's geometry a 1.4x
    faster training pass on a CPU (bench/coco_scale.py --compare-allocator),
    at small views about none (their blocks are under the threshold); the
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
