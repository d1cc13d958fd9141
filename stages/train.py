"""Stage `train`: the chosen method's training (PiCIE: Algorithm 1) -> the model file.

Resume: an interrupted run leaves its checkpoint (outside DVC's outputs, which
DVC deletes before a stage runs); the next `dvc repro` continues from the
last finished epoch when the params and deps the stage lists in dvc.yaml are
the same (lib.checkpoint.resume_key), and starts afresh, saying so, when not.
Paths come from the stage's cmd in dvc.yaml.
"""
import contextlib
import time
from pathlib import Path

import numpy as np
import torch
import typer
import yaml
from dvclive import Live

from lib import curves, distributed, runlog
from lib.checkpoint import resume, resume_key, save_checkpoint, save_model
from lib.cli import setup, user_errors
from lib.config import as_dict, recorded_params
from lib.data import DataError
from lib.frozen import Cache
from lib.io import remove_stale, write_json
from lib.methods import build, cached, epochs, frozen, param_groups, spec, train_one_epoch


@user_errors
def main(data: str = typer.Option(..., help="prepared dataset folder"),
         out: str = typer.Option(..., help="the trained model file"),
         metrics: str = typer.Option(..., help="training metrics (JSON)"),
         live_dir: str = typer.Option(..., help="dvclive folder (curves)"),
         epoch_times: str = typer.Option(..., help="each epoch's times (TSV)"),
         checkpoint: str = typer.Option(..., help="resumable state, kept until training ends"),
         neighbours: str = typer.Option(..., help="the knn stage's nearest neighbours of each training crop, "
                                                  "read by a method that pairs images with them (STEGO)"),
         frozen_features: str = typer.Option(..., help="the frozen stage's cache of the frozen backbone's "
                                                       "features, read by a method that keeps it frozen"),
         params: str = "params.yaml", dvc_yaml: str = "dvc.yaml"):
    paths = dict(data=data, out=out, metrics=metrics, live_dir=live_dir, epoch_times=epoch_times,
                 checkpoint=checkpoint, neighbours=neighbours, frozen_features=frozen_features,
                 dvc_yaml=dvc_yaml)
    nproc = setup(params, compute=False).p.train.nproc
    if nproc > 1 and not distributed.launched():
        # this stage's own command again, in train.nproc processes under torch's elastic launcher
        args = [a for k, v in {**paths, "params": params}.items() for a in (f"--{k.replace('_', '-')}", v)]
        return distributed.launch(nproc, "stages.train", args)
    s = setup(params, data, seeded=True)
    s.device = distributed.local_device(s.device)
    distributed.init(s.device, s.p.runtime.timeout)
    try:
        train(s, **paths)
    except torch.distributed.DistError as e:  # a collective timed out or lost its peer
        raise distributed.lost(e) from None
    finally:
        distributed.close()


def train(s, data, out, metrics, live_dir, epoch_times, checkpoint, neighbours, frozen_features, dvc_yaml):
    p, device, g, prepared = s.p, s.device, s.generator, s.prepared
    main_process = distributed.is_main()  # one process speaks and writes; every process trains
    say = print if main_process else (lambda *a, **k: None)
    say("config:\n" + yaml.safe_dump(as_dict(p), sort_keys=False), flush=True)

    # ============ the data ============
    images = prepared.images("train")
    if images.shape[1] != p.data.train_res:
        raise DataError(f"{data}: training images are {images.shape[1]} px but data.train_res is "
                        f"{p.data.train_res}; re-run the prepare stage (dvc repro)")
    val_images, val_labels = prepared.images("val"), prepared.labels("val")
    scored = val_labels is not None and len(prepared.classes) > 0 and p.curves.every > 0
    if p.curves.every > 0 and not scored:
        say("learning curves off: the validation split has no labels", flush=True)
    context = {}  # what the method's row says it reads beyond the images
    if spec(p.method).neighbours:
        context = {"labels": prepared.labels("train"), "neighbours": np.load(neighbours)}
    if cached(p):  # the frozen stage's cache of the trunk's features, read instead of running the trunk
        context["frozen"] = Cache(frozen_features, "train")

    # ============ the network and its optimiser ============
    model = distributed.sync_batch_norm(build(p, prepared.channels), device).to(device)
    n_epochs = epochs(p)
    groups = param_groups(model, p)  # a frozen backbone's parameters are in none
    trained = [q for group in groups for q in group["params"]]
    optimizer = torch.optim.Adam(groups, lr=p.train.lr) if trained else None
    say(network_line(p, model, trained, n_epochs, images, device, s.threads), flush=True)

    # ============ resuming an interrupted run ============
    key = resume_key(recorded_params(p), "train", dvc_yaml)  # the params and deps dvc.yaml lists for the stage
    if main_process:
        remove_stale(checkpoint, Path(checkpoint).suffix)  # a run killed while saving its checkpoint leaves one
    start, history, resumed = resume(checkpoint, key, n_epochs, model, optimizer, g)
    if resumed:
        say(resumed, flush=True)
    distributed.barrier()  # every process has read the checkpoint before the first one replaces it

    # ============ training ============
    # The curves are re-written from the history at every start: DVC deletes the stage's outputs before
    # it runs, so a resumed run's earlier epochs come from its checkpoint, and its curves equal an
    # uninterrupted run's. They hold only what the computation determines (losses, scores), so identical
    # runs give identical bytes; the epochs' times go to a separate, uncached file.
    with Live(live_dir, dvcyaml=None, save_dvc_exp=False) if main_process else contextlib.nullcontext() as live:
        for entry in history if main_process else ():
            runlog.log_epoch(live, entry)
        for epoch in range(start, n_epochs):
            stats, times = train_one_epoch(model, images, optimizer, p, g, device, epoch, **context)
            if not main_process:
                continue
            scores = {}
            if scored and curves.due(p, epoch):  # draws nothing from the training's generators
                t = time.perf_counter()
                scores = curves.epoch_scores(model, images, val_images, val_labels, prepared, p, device)
                times["curves_s"] = time.perf_counter() - t
            history.append({"stats": stats, "times": times, "scores": scores})
            runlog.log_epoch(live, history[-1])
            save_checkpoint(checkpoint, key, epoch + 1, model, optimizer, g, history)
            print(runlog.epoch_line(epoch, n_epochs, history[-1]), flush=True)

    # ============ the outputs ============
    if main_process:
        save_model(model, out, recorded_params(p))
        runlog.write_times(epoch_times, history)
        write_json(metrics, runlog.summary(history, n_epochs, s.threads, distributed.world()))
        Path(checkpoint).unlink(missing_ok=True)
    distributed.barrier()
    say(f"saved {out}")


def network_line(p, model, trained, n_epochs, images, device, threads):
    """What trains, on what, in one line."""
    total = sum(x.numel() for x in model.parameters())
    rule = "model.freeze" if p.model.freeze else f"{p.method}'s rule"
    part = (f", {sum(x.numel() for x in trained) / 1e6:.2f}M trained: the backbone {p.model.backbone} "
            f"is frozen ({rule})" if frozen(p) and n_epochs else "")
    on = f" in each of {distributed.world()} processes" if distributed.world() > 1 else ""
    return (f"{len(images)} training images, {total / 1e6:.2f}M parameters{part}, device {device}, "
            f"{threads} CPU threads{on}, k-means by {p.cluster.backend}")


if __name__ == "__main__":
    typer.run(main)
