"""Learning curves: the validation scores of the network after an epoch, as the authors' code logs.

After every `curves.every` epochs: the network's pixel outputs on a fixed,
bounded sample of training images (`curves.images`, `curves.max_points`
pixels) are clustered by k-means (cluster.k, cluster.niter, cluster.backend)
and every validation pixel goes to its nearest centroid; a network that
outputs its own assignments (model.classifier: argmax) is scored by their
argmax instead. Hungarian matching on the validation labels gives acc and
mIoU (and things/stuff), logged with dvclive under eval/ so that `dvc plots
diff` compares the curves of two experiments. A run scored by a linear
classifier (model.classifier: linear) is followed by the prototype one here:
fitting a classifier every epoch would cost more than the epoch.

The pass runs in eval mode under no_grad and draws nothing from the
training generator or torch's global one, so a run's training is the same
with curves on or off.
"""
import numpy as np
import torch

from lib.clustering import argmax_classifier, kmeans, predict_clusters, prototype_classifier
from lib.features import gather_pixel_features, iter_features, sample_pixel_index
from lib.metrics import confusion, evaluate_histogram

KEYS = ("acc", "miou", "things_miou", "stuff_miou")  # what is logged, under eval/


def due(p, epoch):
    """Whether the curves are scored after (0-based) epoch."""
    return p.curves.every > 0 and (epoch + 1) % p.curves.every == 0


@torch.no_grad()
def epoch_scores(model, train_images, val_images, val_labels, prepared, p, device):
    """{acc, miou, things_miou, stuff_miou} (%) of the network as it is now; the model's mode is kept."""
    was_training = model.training
    fres = p.data.res // model.stride
    n = min(len(train_images), p.curves.images)
    pick = np.linspace(0, len(train_images) - 1, n).round().astype(np.int64)  # the same images every epoch
    if p.model.classifier == "argmax":
        clf = argmax_classifier(model.out_channels)
    else:
        index = sample_pixel_index(n, fres, fres, p.curves.max_points, p.seed)
        x = gather_pixel_features(model, train_images[pick], index, p.runtime.inference_batch, device, p.data.res,
                                  desc="curves features")
        clf = prototype_classifier(kmeans(torch.from_numpy(x), p.cluster.k, p.cluster.niter, p.seed,
                                          p.cluster.backend))
    maps = ((i, predict_clusters(z, clf, val_labels.shape[-2:]).numpy())
            for i, z in iter_features(model, val_images, p.runtime.inference_batch, device, "curves score"))
    hist = confusion(maps, val_labels, len(prepared.classes), len(clf))
    model.train(was_training)
    scores, _, _ = evaluate_histogram(hist, prepared.classes, prepared.things, prepared.stuff)
    return {key: scores[key] for key in KEYS if scores.get(key) is not None}
