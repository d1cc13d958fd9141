"""Stage `probe` (PiCIE Table 7): a linear classifier on the frozen features, with the training labels.

Scored on the validation split without any matching: acc, mIoU, per-class IoU.
A dataset without training labels (a folder of images, PiCIE's Cityscapes
split) has nothing to probe with: the stage says so and writes no scores.
"""
import time

import typer

from lib.checkpoint import load_model
from lib.cli import setup, user_errors
from lib.io import write_json
from lib.metrics import confusion, flat_scores
from lib.readout import fit_probe, label_maps

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, model_path: str = REQUIRED, metrics: str = REQUIRED,
         params: str = "params.yaml"):
    s = setup(params, data, seeded=True)
    p, device, g, prepared = s.p, s.device, s.generator, s.prepared
    train_labels, val_labels = prepared.labels("train"), prepared.labels("val")
    if train_labels is None or val_labels is None or not prepared.classes:
        print("probe: the dataset has no training or validation labels; nothing to probe")
        write_json(metrics, {"labelled": 0})
        return
    model, _ = load_model(model_path, device)
    n = len(prepared.classes)
    t = time.perf_counter()
    head, history = fit_probe(model, prepared.images("train"), train_labels, n, p, g, device)
    maps = label_maps(lambda x: head(model.embed(x, normalize=p.probe.normalize)), prepared.images("val"),
                      val_labels.shape[-2:], p.runtime.inference_batch, device, p.data.res, "probe score")
    hist = confusion(maps, val_labels, n, n)
    out = {"labelled": 1, **flat_scores(hist, prepared.classes, prepared.things, prepared.stuff),
           "final_loss": round(history[-1], 5) if history else None,
           "time_s": round(time.perf_counter() - t, 1)}
    write_json(metrics, out)
    print(f"linear probe ({'normalised' if p.probe.normalize else 'raw'} features, {p.probe.epochs} epochs): "
          f"acc {out['acc']:.2f}  mIoU {out['miou']:.2f}")


if __name__ == "__main__":
    typer.run(main)
