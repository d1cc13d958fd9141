"""Stage `evaluate`: label validation pixels with the run's classifier and score them.

As the authors did: the classifier's scores at feature resolution (for
prototypes, -||z - mu_k||^2 up to a per-pixel constant), bilinearly
upsampled to the label size, argmax, a (class x cluster) histogram, Hungarian
matching, pixel accuracy and mIoU, and the same on the things and stuff
partitions. Without labels, only the predictions are written.
"""
import h5py
import numpy as np
import torch
import typer

from lib.cli import user_errors
from lib.clustering import predict_clusters
from lib.config import load_params
from lib.data import Prepared
from lib.io import atomic_path, write_json
from lib.metrics import evaluate_histogram, histogram
from lib.report import plot_confusion

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, features: str = REQUIRED,
         classifier: str = REQUIRED, metrics: str = REQUIRED,
         details: str = REQUIRED, predictions: str = REQUIRED,
         confusion_png: str = REQUIRED, params: str = "params.yaml"):
    p = load_params(params)
    prepared = Prepared(data)
    clf = torch.from_numpy(np.load(classifier))
    k = len(clf)
    labels = prepared.labels("val")
    n_classes = len(prepared.classes)
    hist = np.zeros((max(n_classes, 1), k), dtype=np.int64)
    with h5py.File(features, "r") as f, atomic_path(predictions) as tmp:
        vf = f["val/features"]
        res = prepared.meta["res"]
        preds = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(vf), res, res))
        for i in range(0, len(vf), 64):
            z = torch.from_numpy(vf[i:i + 64].astype(np.float32))
            preds[i:i + len(z)] = predict_clusters(z, clf, res).numpy().astype(np.uint8)
            if labels is not None and n_classes:
                hist += histogram(labels[i:i + len(z)], preds[i:i + len(z)], n_classes, k)
        preds.flush()
        del preds

    out = {"val_images": int(prepared.meta["splits"]["val"])}
    detail = {"classes": prepared.classes, "k": k, "labelled": labels is not None and n_classes > 0,
              "classifier": p.model.classifier}
    if detail["labelled"]:
        scored, mapping, conf = evaluate_histogram(hist, prepared.classes, prepared.things, prepared.stuff)
        out.update(scored)
        detail.update(mapping=mapping.tolist(), confusion=conf.tolist(), histogram=hist.tolist(),
                      things=prepared.things,
                      stuff=prepared.stuff, metrics=scored)
        plot_confusion(conf, prepared.classes, confusion_png)
        print(f"acc {out['acc']:.2f}  mIoU {out['miou']:.2f}  ({out['val_images']} validation images)")
    else:
        plot_confusion(None, [], confusion_png)
        print("no labels: predictions written, nothing scored")
    write_json(details, detail)
    write_json(metrics, out)


if __name__ == "__main__":
    typer.run(main)
