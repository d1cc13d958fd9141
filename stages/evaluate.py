"""Stage `evaluate`: label validation pixels with the run's classifier and score them.

As the authors did: the classifier's scores at feature resolution (for
prototypes, -||z - mu_k||^2 up to a per-pixel constant), bilinearly
upsampled to the label size, argmax, a (class x cluster) histogram, Hungarian
matching, pixel accuracy and mIoU, and the same on the things and stuff
partitions. Without labels, only the predictions are written. eval.flip and
eval.crf score as papers since STEGO do (lib/scoring.py); metrics/eval.json
says which protocol scored it.
"""
import h5py
import numpy as np
import torch
import typer
from tqdm import tqdm

from lib.checkpoint import load_model
from lib.cli import setup, user_errors
from lib.io import atomic_path, write_json
from lib.methods import spec
from lib.metrics import confusion, evaluate_histogram
from lib.report import plot_confusion
from lib.scoring import Scorer, protocol, score_kind

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, features: str = REQUIRED, model_path: str = REQUIRED,
         classifier: str = REQUIRED, metrics: str = REQUIRED,
         details: str = REQUIRED, predictions: str = REQUIRED,
         confusion_png: str = REQUIRED, params: str = "params.yaml"):
    s = setup(params, data)
    p, prepared = s.p, s.prepared
    clf = torch.from_numpy(np.load(classifier))
    k = len(clf)
    labels = prepared.labels("val")
    n_classes = len(prepared.classes)
    labelled = labels is not None and n_classes > 0
    # scores of the dumped features on the CPU; a forward pass (flip) and the CRF where the runtime says
    device = s.device if p.eval.flip or p.eval.crf else torch.device("cpu")
    model = None
    if p.eval.flip:  # the flipped images' features, computed as the dump computed the images' own
        model = load_model(model_path, device)[0]
    kind = score_kind(p.model.classifier, spec(p.method).outputs)
    print(f"scoring: {protocol(p.eval)}", flush=True)
    images = prepared.images("val")
    with h5py.File(features, "r") as f, atomic_path(predictions) as tmp, \
            Scorer(clf, kind, p.eval, model, device, s.workers) as scorer:
        vf = f["val/features"]
        res = prepared.meta["res"]
        preds = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(vf), res, res))
        batch = p.runtime.inference_batch

        def predicted():  # each batch's labels, written to the predictions file as they are made
            with tqdm(total=len(vf), desc="evaluate", unit="image", disable=not p.eval.crf) as bar:
                for i in range(0, len(vf), batch):
                    z = torch.from_numpy(vf[i:i + batch].astype(np.float32))
                    preds[i:i + len(z)] = np.stack(scorer.labels(z, images[i:i + len(z)]))
                    bar.update(len(z))
                    yield i, preds[i:i + len(z)]

        if labelled:
            hist = confusion(predicted(), labels, n_classes, k)
        else:
            for _ in predicted():
                pass
        preds.flush()
        del preds

    # the protocol that scored it, as numbers (1: on) so that `dvc metrics diff` lists them beside the scores
    out = {"val_images": int(prepared.meta["splits"]["val"]), "flip": int(p.eval.flip), "crf": int(p.eval.crf)}
    detail = {"classes": prepared.classes, "k": k, "labelled": labelled,
              "classifier": p.model.classifier, "protocol": protocol(p.eval)}
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
