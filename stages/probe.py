"""Stage `probe` (PiCIE Table 7): a linear classifier on the frozen features, with the training labels.

Scored on the validation split without any matching: acc, mIoU, per-class IoU.
A dataset without training labels (a folder of images, PiCIE's Cityscapes
split) has nothing to probe with: the stage says so and writes no scores.
"""
import time

import typer

from lib.checkpoint import load_model
from lib.cli import pick_device, set_allocator, set_threads, seed_everything, user_errors
from lib.config import load_params
from lib.data import Prepared
from lib.io import write_json
from lib.metrics import flat_scores
from lib.readout import class_histogram, fit_probe

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, model_path: str = REQUIRED, metrics: str = REQUIRED,
         params: str = "params.yaml"):
    p = load_params(params)
    set_threads(p.train.threads)
    set_allocator(p.train.allocator)
    device = pick_device(p.train.device)
    g = seed_everything(p.seed)
    prepared = Prepared(data)
    train_labels, val_labels = prepared.labels("train"), prepared.labels("val")
    if train_labels is None or val_labels is None or not prepared.classes:
        print("probe: the dataset has no training or validation labels; nothing to probe")
        write_json(metrics, {"labelled": 0})
        return
    model, _ = load_model(model_path, device)
    n = len(prepared.classes)
    t = time.perf_counter()
    head, history = fit_probe(model, prepared.images("train"), train_labels, n, p, g, device)
    hist = class_histogram(lambda x: head(model.embed(x, normalize=p.probe.normalize)), prepared.images("val"),
                           val_labels, n, n, p.train.batch_size, device, p.data.res, "probe score")
    out = {"labelled": 1, **flat_scores(hist, prepared.classes, prepared.things, prepared.stuff),
           "final_loss": round(history[-1], 5) if history else None,
           "time_s": round(time.perf_counter() - t, 1)}
    write_json(metrics, out)
    print(f"linear probe ({'normalised' if p.probe.normalize else 'raw'} features, {p.probe.epochs} epochs): "
          f"acc {out['acc']:.2f}  mIoU {out['miou']:.2f}")


if __name__ == "__main__":
    typer.run(main)
