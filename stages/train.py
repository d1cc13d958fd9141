"""Stage `train`: the chosen method's training (PiCIE: Algorithm 1) -> the model file.

Resume: an interrupted run leaves its checkpoint (outside DVC's outputs, which
DVC deletes before a stage runs); the next `dvc repro` continues from the
last finished epoch when the params and deps the stage lists in dvc.yaml are
the same (lib.checkpoint.resume_key), and starts afresh, saying so, when not.
Paths come from the stage's cmd in dvc.yaml.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
import typer
import yaml
from dvclive import Live

from lib import curves, distributed
from lib.checkpoint import resume_key, save, save_model
from lib.cli import pick_device, set_allocator, set_threads, seed_everything, user_errors
from lib.config import as_dict, load_params
from lib.data import DataError, Prepared
from lib.io import atomic_path, remove_stale, write_json
from lib.methods import build, epochs, frozen, param_groups, spec, train_one_epoch


TIME_COLUMNS = ("epoch_time_s", "outside_ratio", "curves_s")


def log_epoch(live, entry):
    for name, v in entry["stats"].items():
        live.log_metric(f"train/{name}", v)
    for name, v in entry["scores"].items():
        live.log_metric(f"eval/{name}", v)
    live.next_step()


def write_times(path, history):
    """Each epoch's wall-clock times, one row per epoch (a plot, not cached: they differ run to run)."""
    rows = ["step\t" + "\t".join(TIME_COLUMNS)]
    rows += [f"{i}\t" + "\t".join(f"{h['times'].get(c, 0.0):.3f}" for c in TIME_COLUMNS)
             for i, h in enumerate(history)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")


@user_errors
def main(data: str = typer.Option(..., help="prepared dataset folder"),
         out: str = typer.Option(..., help="the trained model file"),
         metrics: str = typer.Option(..., help="training metrics (JSON)"),
         live_dir: str = typer.Option(..., help="dvclive folder (curves)"),
         epoch_times: str = typer.Option(..., help="each epoch's times (TSV)"),
         checkpoint: str = typer.Option(..., help="resumable state, kept until training ends"),
         neighbours: str = typer.Option(..., help="the knn stage's nearest neighbours of each training crop, "
                                                  "read by a method that pairs images with them (STEGO)"),
         params: str = "params.yaml", dvc_yaml: str = "dvc.yaml"):
    p = load_params(params)
    if p.train.nproc > 1 and not distributed.launched():
        # this stage's own command again, in train.nproc processes under torch's elastic launcher
        args = {"data": data, "out": out, "metrics": metrics, "live-dir": live_dir, "epoch-times": epoch_times,
                "checkpoint": checkpoint, "neighbours": neighbours, "params": params, "dvc-yaml": dvc_yaml}
        return distributed.launch(p.train.nproc, "stages.train", [a for k, v in args.items() for a in (f"--{k}", v)])
    device = distributed.local_device(pick_device(p.train.device))
    distributed.init(device, p.train.timeout)
    try:
        train(p, device, data, out, metrics, live_dir, epoch_times, checkpoint, neighbours, dvc_yaml)
    except torch.distributed.DistError as e:  # a collective timed out or lost its peer
        raise distributed.lost(e) from None
    finally:
        distributed.close()


def train(p, device, data, out, metrics, live_dir, epoch_times, checkpoint, neighbours, dvc_yaml):
    say = print if distributed.is_main() else (lambda *a, **k: None)  # one process speaks and writes
    pd = as_dict(p)
    say("config:\n" + yaml.safe_dump(pd, sort_keys=False), flush=True)
    threads = set_threads(p.train.threads)
    set_allocator(p.train.allocator)
    g = seed_everything(p.seed)
    prepared = Prepared(data)
    images = prepared.images("train")
    val_images, val_labels = prepared.images("val"), prepared.labels("val")
    scored = val_labels is not None and len(prepared.classes) > 0 and p.curves.every > 0
    if p.curves.every > 0 and not scored:
        say("learning curves off: the validation split has no labels", flush=True)
    if images.shape[1] != p.data.train_res:
        raise DataError(f"{data}: training images are {images.shape[1]} px but data.train_res is "
                        f"{p.data.train_res}; re-run the prepare stage (dvc repro)")
    model = distributed.sync_batch_norm(build(p, prepared.channels), device).to(device)
    context = {}  # what the method's row says it reads beyond the images
    if spec(p.method).neighbours:
        context = {"labels": prepared.labels("train"), "neighbours": np.load(neighbours)}
    n_epochs = epochs(p)
    groups = param_groups(model, p)  # a frozen backbone's parameters are in none
    params_list = [q for group in groups for q in group["params"]]
    optimizer = torch.optim.Adam(groups, lr=p.train.lr) if params_list else None
    total = sum(x.numel() for x in model.parameters())
    rule = "model.freeze" if p.model.freeze else f"{p.method}'s rule"
    trained = (f", {sum(x.numel() for x in params_list) / 1e6:.2f}M trained: the backbone {p.model.backbone} "
               f"is frozen ({rule})" if frozen(p) and n_epochs else "")
    say(f"{len(images)} training images, {total / 1e6:.2f}M parameters{trained}, "
        f"device {device}, {threads} CPU threads" + (f" in each of {distributed.world()} processes"
                                                      if distributed.world() > 1 else "")
        + f", k-means by {p.cluster.backend}", flush=True)

    start, history = 0, []
    key = resume_key(pd, "train", dvc_yaml)  # the params and deps dvc.yaml lists for this stage
    ckpt_path = Path(checkpoint)
    if distributed.is_main():
        remove_stale(ckpt_path, ckpt_path.suffix)  # a run killed while saving its checkpoint leaves a temporary
    if ckpt_path.is_file() and n_epochs > 0:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("config") == key and state["epoch"] < n_epochs:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            g.set_state(state["generator"])
            start, history = state["epoch"], json.loads(state["history"])
            say(f"resuming from {ckpt_path} after epoch {start}", flush=True)
        else:
            say(f"not resuming {ckpt_path}: it is from other params or code than this run (the train stage's "
                "params and deps in dvc.yaml); starting afresh", flush=True)
    distributed.barrier()  # every process has read the checkpoint before the first one replaces it

    if not distributed.is_main():  # the others train alongside; the first writes curves, checkpoints, outputs
        for epoch in range(start, n_epochs):
            train_one_epoch(model, images, optimizer, p, g, device, epoch, **context)
        distributed.barrier()
        return

    # The curves are re-written from the history at every start: DVC deletes the stage's outputs before
    # it runs, so a resumed run's earlier epochs come from its checkpoint, and its curves equal an
    # uninterrupted run's. They hold only what the computation determines (losses, scores), so identical
    # runs give identical bytes; the epochs' times go to a separate, uncached file.
    with Live(live_dir, dvcyaml=None, save_dvc_exp=False) as live:
        for entry in history:
            log_epoch(live, entry)
        for epoch in range(start, n_epochs):
            stats, times = train_one_epoch(model, images, optimizer, p, g, device, epoch, **context)
            scores = {}
            if scored and curves.due(p, epoch):
                t = time.perf_counter()
                scores = curves.epoch_scores(model, images, val_images, val_labels, prepared, p, device)
                times["curves_s"] = time.perf_counter() - t
            history.append({"stats": stats, "times": times, "scores": scores})
            log_epoch(live, history[-1])
            save({"config": key, "epoch": epoch + 1, "model": model.state_dict(),
                  "optimizer": optimizer.state_dict(), "generator": g.get_state(),
                  "history": json.dumps(history)}, ckpt_path)
            curve = (f"; validation acc {scores['acc']:.2f} mIoU {scores['miou']:.2f} "
                     f"({times['curves_s']:.1f}s)") if scores else ""
            print(f"epoch {epoch + 1}/{n_epochs} loss {stats['loss']:.4f} ({times['epoch_time_s']:.1f}s, "
                  f"cluster {times['cluster']:.1f}s, train {times['train']:.1f}s, "
                  f"outside/inside {times['outside_ratio']:.2f}){curve}", flush=True)

    save_model(model, out, pd)
    write_times(epoch_times, history)
    summary = {"epochs": n_epochs, "threads": threads}
    if distributed.world() > 1:
        summary["processes"] = distributed.world()
    if history:
        summary.update({"final_loss": round(history[-1]["stats"]["loss"], 5),
                        "epoch_time_s": round(sum(h["times"]["epoch_time_s"] for h in history) / len(history), 2),
                        "outside_ratio": round(sum(h["times"]["outside_ratio"] for h in history) / len(history), 4)})
        scored_epochs = [h for h in history if h["scores"]]
        if scored_epochs:  # the curves' cost, against the epochs they follow
            summary["curves_overhead"] = round(sum(h["times"]["curves_s"] for h in scored_epochs)
                                               / sum(h["times"]["epoch_time_s"] for h in scored_epochs), 4)
    write_json(metrics, summary)
    ckpt_path.unlink(missing_ok=True)
    distributed.barrier()
    print(f"saved {out}")


if __name__ == "__main__":
    typer.run(main)
