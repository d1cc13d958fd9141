"""Supervised read-outs of a learned representation (PiCIE Tables 7 and 8).

- Linear probe: a 1x1 classifier on the frozen features, trained with the
  labels of the training split (`fit_probe`).
- Re-training: the whole network plus a 1x1 head, initialised from the
  unsupervised checkpoint (or ImageNet weights, or randomly), trained with the
  labels (`fit_supervised`); scored by its head, and, as the paper's C-Acc and
  C-mIoU, by k-means on its features matched to the classes.

Logits are upsampled bilinearly to the label resolution, as in evaluation,
and the loss is cross-entropy with ignored pixels left out.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from lib.data import IGNORE
from lib.clustering import upsample_scores
from lib.features import iter_features, to_tensor
from lib.transforms import resize

PROBE_CACHE_BYTES = 2 << 30  # frozen features are kept in memory (float16) up to this size


def label_tensor(labels, idx, size, device):
    """Labels of images idx at size x size (nearest: training labels are stored at data.train_res)."""
    y = torch.from_numpy(np.array(labels[idx])).to(device)
    if y.shape[-1] != size:
        y = F.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0]
    return y.long()


def segmentation_loss(logits, y):
    logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, y, ignore_index=IGNORE)


def fit(predict, parameters, inputs, labels, epochs, lr, batch_size, g, device, res, flip=False, desc="fit"):
    """Adam on the cross-entropy of predict(inputs(idx)) against the labels; mean loss per epoch.

    `flip`: a random horizontal flip per image, of input and labels together.
    """
    opt = torch.optim.Adam(parameters, lr=lr)
    n = len(labels)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=g).numpy()
        total, steps = 0.0, 0
        bar = tqdm(range(max(1, n // batch_size)), desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False)
        for b in bar:
            idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
            x, y = inputs(idx), label_tensor(labels, idx, res, device)
            if flip:
                f = (torch.rand(len(idx), generator=g) < 0.5).to(device)
                x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
                y = torch.where(f.view(-1, 1, 1), y.flip(-1), y)
            loss = segmentation_loss(predict(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: non-finite loss at epoch {epoch + 1}, step {steps}: stopping "
                                         "(lower the learning rate?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append(total / max(steps, 1))
    return history


def fit_probe(model, images, labels, n_classes, p, g, device):
    """A 1x1 linear classifier on frozen features (probe.normalize: L2-normalised or raw)."""
    model.eval()
    res = p.data.res
    head = nn.Conv2d(model.dim, n_classes, 1).to(device)
    fres = res // model.stride
    cache = None
    if len(images) * model.dim * fres * fres * 2 <= PROBE_CACHE_BYTES:
        # frozen features: compute them once instead of once per epoch
        cache = torch.zeros(len(images), model.dim, fres, fres, dtype=torch.float16)
        for i, z in iter_features(model, images, p.train.batch_size, device, "probe features", size=res,
                                  normalize=p.probe.normalize, embed=True):
            cache[i:i + len(z)] = z.half()

    def inputs(idx):
        if cache is not None:
            return cache[torch.from_numpy(idx)].to(device).float()
        with torch.no_grad():
            return model.embed(resize(to_tensor(images[idx], device), res), normalize=p.probe.normalize)

    history = fit(head, head.parameters(), inputs, labels, p.probe.epochs, p.probe.lr, p.train.batch_size, g,
                  device, res, desc="probe")
    return head, history


class Supervised(nn.Module):
    """The segmentation network with a 1x1 classification head (re-training)."""

    def __init__(self, net, n_classes):
        super().__init__()
        self.net, self.head = net, nn.Conv2d(net.dim, n_classes, 1)

    def forward(self, x):
        return self.head(self.net.embed(x))


def fit_supervised(net, images, labels, n_classes, p, g, device):
    model = Supervised(net, n_classes).to(device).train()
    res = p.data.res
    history = fit(model, model.parameters(), lambda idx: resize(to_tensor(images[idx], device), res), labels,
                  p.retrain.epochs, p.retrain.lr, p.train.batch_size, g, device, res, flip=True, desc="retrain")
    return model.eval(), history


@torch.no_grad()
def label_maps(predict, images, size, batch_size, device, res, desc="score"):
    """(index of the first image, label maps (B, *size)) of images seen at res: the argmax of predict(x)'s
    scores (B, k, h, w) upsampled to size, in batches (for lib.metrics.confusion)."""
    for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False):
        x = resize(to_tensor(images[i:i + batch_size], device), res)
        yield i, upsample_scores(predict(x), size).argmax(1).cpu().numpy()
