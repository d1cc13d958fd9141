"""Training on several processes with torch.distributed: what each part of the code asks of it.

One process (the default, `train.nproc: 1`) never initialises a process group,
and every function here is then the identity or a no-op: the single-process
computation is unchanged.

Under `torchrun` (the train stage launches it itself for `train.nproc` > 1, or
a user runs it across machines, docs/distributed.md) the
processes split every batch, not the epoch: each draws the same shuffle, the
same augmentations and the same pixel samples from the run's seeded generator,
for the whole batch of `train.batch_size` images, and works on its own
contiguous block of rows (`rows`). So process r's images of step s are those a
single process would give rows r*B/n .. (r+1)*B/n of its step s, the random
draws are a single process's, and the global batch is `train.batch_size`
whatever n is. Gradients are averaged by DistributedDataParallel (`wrap`).
"""
import datetime
import os
import warnings

import torch
import torch.distributed as dist
import torch.nn as nn

from lib.errors import DistributedError


def active():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if active() else 0


def world():
    return dist.get_world_size() if active() else 1


def is_main():
    return rank() == 0


def launched():
    """Whether this process was started by torchrun (or the train stage's own launch) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch(nproc, module, args):
    """Run `python -m module args` in nproc processes on this machine under torch's elastic launcher
    (torchrun --standalone), and wait for them. A process that fails stops the others, and the run ends
    with one line naming it (its own error is printed above it)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    # torchrun gives each process 1 thread when OMP_NUM_THREADS is unset; share the cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", module, *args])
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        raise DistributedError(f"training process {rank} of {nproc} failed (exit code {failure.exitcode}); "
                               "the others were stopped. Its error is above; `dvc repro` resumes from the last "
                               "finished epoch") from None


def local_device(device):
    """This process's CUDA device (cuda:LOCAL_RANK) when launched on several, else `device`."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init(device, timeout_s):
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU). Every
    collective waits at most timeout_s: a process that died makes the others fail, not hang."""
    if not launched() or active():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))


def lost(error):
    """The one-line error of a process whose collective failed: another process died or stopped answering."""
    return DistributedError(f"training process {rank()} of {world()}: another process stopped answering "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); the run is stopped, "
                            "and `dvc repro` resumes from the last finished epoch")


def close():
    if active():
        dist.destroy_process_group()


def rows(n):
    """This process's block of a batch of n rows: a slice (the whole batch on one process)."""
    w, r = world(), rank()
    return slice(r * n // w, (r + 1) * n // w)


def own_rows(*xs):
    """Each tensor (or None) cut to this process's rows of its batch."""
    if world() == 1:
        return xs
    return tuple(None if x is None else x[rows(x.shape[0])] for x in xs)


def all_sum(t):
    """The sum over processes of t, differentiable (its gradient is summed back to every process)."""
    if world() == 1:
        return t
    with warnings.catch_warnings():  # torch marks it deprecated for a private successor; it is what works
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)


def all_cat(t):
    """The rows of every process's t, in rank order (a single process's batch), differentiable; the
    processes may hold different numbers of rows."""
    if world() == 1:
        return t
    counts = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(world())]
    dist.all_gather(counts, torch.tensor([t.shape[0]], device=t.device))
    counts = [int(c) for c in counts]
    pad = max(counts) - t.shape[0]
    padded = torch.cat([t, t.new_zeros((pad,) + t.shape[1:])]) if pad else t.contiguous()
    if t.requires_grad and torch.is_grad_enabled():
        with warnings.catch_warnings():  # torch marks it deprecated for a private successor; it is what works
            warnings.simplefilter("ignore", FutureWarning)
            from torch.distributed.nn.functional import all_gather

            parts = all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in range(world())]
        dist.all_gather(parts, padded)
    return torch.cat([part[:c] for part, c in zip(parts, counts)])


def mean_of(value):
    """A float's mean over processes (logged losses), the same on every process."""
    if world() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / world()


def broadcast(tensors, device):
    """Rank 0's tensors on every process (the others pass tensors of the same shapes and dtypes, or None
    entries as rank 0 has them)."""
    if world() == 1:
        return tensors
    out = []
    for t in tensors:
        if t is not None:
            t = t.to(device).contiguous()
            dist.broadcast(t, 0)
        out.append(t)
    return out


def barrier():
    if active():
        dist.barrier()


class Step(nn.Module):
    """What DistributedDataParallel wraps: the modules being trained, and as forward the method's own
    step, so that every parameter the step uses (the network, its heads, an epoch's classifiers) is
    reduced, whatever submodules the method calls."""

    def __init__(self, modules):
        super().__init__()
        self.trained = nn.ModuleList(modules)

    def forward(self, step, *args):
        return step(*args)


def wrap(modules, device):
    """A callable running step(*args) under DDP over `modules`; on one process, step itself. Made anew each
    epoch, so the parameters a step uses are the same at every step of it (static_graph): a parameter
    an epoch leaves unused (IIC's alternating heads) is allowed."""
    if world() == 1:
        return lambda step, *args: step(*args)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(Step(modules), device_ids=ids, static_graph=True)


def sync_batch_norm(model, device):
    """Batch-norm statistics over the global batch where torch can (CUDA: SyncBatchNorm); on CPU each
    process normalises by its own rows' statistics (torch has no CPU SyncBatchNorm)."""
    if world() > 1 and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
