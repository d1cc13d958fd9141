"""The batch loop every method trains with: shuffled full batches, one step each, a stop on
a non-finite loss, and where the time went (for the outside/inside ratio)."""
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from lib.distributed import is_main, mean_of, wrap
from lib.features import to_tensor


def now(device):
    """A timestamp after the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def use_amp(p, device):
    """bfloat16 autocast: on CUDA where train.amp asks for it, on the CPU where train.amp_cpu does."""
    return p.train.amp if device.type == "cuda" else device.type == "cpu" and p.train.amp_cpu


def run_batches(model, images, p, g, device, epoch, step, optimizers, t0, times=None, modules=(), read=None):
    """The rest of an epoch begun at t0: step(x, times) -> (loss, parts) for each batch x, then
    backward and every optimiser, with the model in training mode. x is the batch's images as a
    float tensor on the device, or what read(ids) makes of the batch's (sorted) indices into `images`.

    `step` adds the seconds it spends augmenting and labelling to times["augment"]
    and times["label"]; this loop adds times["data"] (reading the batch) and
    times["train"] (everything else: forward, loss, backward, optimiser);
    times["cluster"] is what the caller spent before (0 without a clustering pass);
    times["epoch_time_s"] is the whole epoch's, from t0.
    Full batches only (the last partial one is dropped, as a DataLoader with
    drop_last). Returns the mean of each loss part and the epoch's times.

    Under torch.distributed every process reads the whole batch and the step
    works on its own rows of it (lib/distributed); the step runs inside
    DistributedDataParallel over the model and `modules` (other trained
    modules, as an epoch's linear heads), which averages the gradients; the
    losses logged are the processes' mean.
    """
    times = {} if times is None else times
    for key in ("cluster", "data", "augment", "label", "train"):
        times.setdefault(key, 0.0)
    model.train()
    call = wrap([model, *modules], device)
    bs = p.train.batch_size
    order = torch.randperm(len(images), generator=g).numpy()
    sums, steps = {}, 0
    bar = tqdm(range(max(1, len(images) // bs)), desc=f"epoch {epoch} train", leave=False, disable=not is_main())
    for b in bar:
        t = now(device)
        ids = np.sort(order[b * bs:(b + 1) * bs])
        x = read(ids) if read else to_tensor(images[ids], device)
        t1 = now(device)
        aside = times["augment"] + times["label"]
        loss, parts = call(step, x, times)
        value = mean_of(loss.item())  # every process stops together on a non-finite loss
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss {value} at epoch {epoch}, step {steps}: "
                                     "stopping (lower train.lr?)")
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        t3 = now(device)
        times["data"] += t1 - t
        times["train"] += (t3 - t1) - (times["augment"] + times["label"] - aside)
        parts["loss"] = loss.detach()
        for key, v in parts.items():
            sums[key] = sums.get(key, 0.0) + float(v)
        steps += 1
        bar.set_postfix(loss=f"{parts['loss']:.3f}")
    times["epoch_time_s"] = time.perf_counter() - t0
    times["outside_ratio"] = (times["epoch_time_s"] - times["train"]) / max(times["train"], 1e-9)
    return {key: mean_of(v / max(steps, 1)) for key, v in sums.items()}, times
