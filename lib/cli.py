"""What every stage script shares: one-line errors, device choice, seeding.

torch is imported by the functions that use it, not here: the `fingerprint`
stage runs on every `dvc repro` and needs only `user_errors`, and importing
torch is ~2.5 s of its ~3 s."""
import contextlib
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


def seed_everything(seed):
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
