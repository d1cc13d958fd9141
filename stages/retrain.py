"""Stage `retrain` (PiCIE Table 8): supervised training of the whole network from the unsupervised one.

retrain.init: unsupervised (models/model.pt, the default: does the unsupervised
training give a better start?) | weights (model.weights, e.g. ImageNet) |
random. Scored by the network's own head (acc, mIoU) and, as the paper's
C-Acc / C-mIoU, by k-means (cluster.k) on its features with Hungarian matching.
"""
import time

import torch
import typer

from lib.checkpoint import load_model, save, save_model
from lib.clustering import classifier_scores, kmeans, prototype_classifier
from lib.cli import setup, user_errors
from lib.config import recorded_params
from lib.features import gather_pixel_features, sample_pixel_index
from lib.io import write_json
from lib.metrics import confusion, evaluate_histogram, flat_scores
from lib.models import feature_network
from lib.readout import fit_supervised, label_maps

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, model_path: str = REQUIRED, out: str = REQUIRED,
         metrics: str = REQUIRED, params: str = "params.yaml"):
    s = setup(params, data, seeded=True)
    p, device, g, prepared = s.p, s.device, s.generator, s.prepared
    train, train_labels, val_labels = prepared.images("train"), prepared.labels("train"), prepared.labels("val")
    if train_labels is None or val_labels is None or not prepared.classes:
        print("retrain: the dataset has no training or validation labels; nothing to train with")
        write_json(metrics, {"labelled": 0})
        save({"labelled": False}, out)  # the declared output exists; it holds no model
        return
    if p.retrain.init == "unsupervised":
        net, _ = load_model(model_path, device)
    else:
        weights = p.model.weights if p.retrain.init == "weights" else ""
        net = feature_network(p, prepared.channels, weights).to(device)  # the backbone + FPN network
    n = len(prepared.classes)
    t = time.perf_counter()
    model, history = fit_supervised(net, train, train_labels, n, p, g, device)
    val, size = prepared.images("val"), val_labels.shape[-2:]
    bs, res = p.runtime.inference_batch, p.data.res
    scores = flat_scores(confusion(label_maps(model, val, size, bs, device, res, "retrain score"), val_labels, n, n),
                         prepared.classes, prepared.things, prepared.stuff)
    # C-Acc / C-mIoU: the retrained features clustered and matched like the unsupervised ones
    fres = res // net.stride
    index = sample_pixel_index(len(train), fres, fres, p.dump.train_points, p.seed)
    feats = gather_pixel_features(net, train, index, bs, device, res, desc="retrain features", embed=True)
    clf = prototype_classifier(kmeans(torch.from_numpy(feats).to(device), p.cluster.k, p.cluster.niter, p.seed,
                                      p.cluster.backend))
    maps = label_maps(lambda x: classifier_scores(net.embed(x), clf), val, size, bs, device, res, "retrain clusters")
    hist = confusion(maps, val_labels, n, p.cluster.k)
    clustered, _, _ = evaluate_histogram(hist, prepared.classes, prepared.things, prepared.stuff)
    save_model(net, out, recorded_params(p))
    summary = {"labelled": 1, **scores, "c_acc": clustered["acc"], "c_miou": clustered["miou"],
               "final_loss": round(history[-1], 5) if history else None, "time_s": round(time.perf_counter() - t, 1)}
    write_json(metrics, summary)
    print(f"retrained from {p.retrain.init} ({p.retrain.epochs} epochs): acc {summary['acc']:.2f} "
          f"mIoU {summary['miou']:.2f}; clustered: C-acc {summary['c_acc']:.2f} C-mIoU {summary['c_miou']:.2f}")


if __name__ == "__main__":
    typer.run(main)
