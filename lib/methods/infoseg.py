"""InfoSeg's two steps (Sec. 4.2-4.3) and its Table 2 ablations, as functions of (L, H).

Segmentation step: class probabilities V = softmax(tau <L_ij, H_k>) over k (Eq. 3),
the segmentation is argmax_k V (Eq. 4). MI step: S_ij = sum_k V_ijk H_k (Eq. 5),
and the MI between L_ij and S_ij is bounded with the discriminator
T(x, y) = <x, y>: positives pair L and S of the same image, negatives pair L
of one image with S of every other image of the batch (Eq. 8).
"""
import time

import torch
import torch.nn.functional as F

from lib.loop import now, run_batches, use_amp
from lib.mi import dv_bound, iic_mutual_information, jsd_bound
from lib.picie import augment
from lib.transforms import apply_geometric, resize

BOUNDS = {"jsd": jsd_bound, "dv": dv_bound}


def class_scores(local, glob):
    """<L_ij, H_k>: (B, P, U, V) x (B, K, P) -> (B, K, U, V)."""
    return torch.einsum("bpuv,bkp->bkuv", local, glob)


def probabilities(local, glob, tau):
    return torch.softmax(tau * class_scores(local, glob), 1)


def assignment(v, glob, hard=False):
    """S_ij = sum_k V_ijk H_k (soft, Eq. 5), or H of the argmax class (the 'hard' ablation)."""
    if hard:
        v = F.one_hot(v.argmax(1), v.shape[1]).permute(0, 3, 1, 2).to(glob.dtype)
    return torch.einsum("bkuv,bkp->bpuv", v, glob)


def pair_scores(local, s):
    """Discriminator scores of every (image b's L, image c's S) at every position: (B, B, U, V)."""
    return torch.einsum("bpuv,cpuv->bcuv", local, s)


def infoseg_loss(local, glob, tau, bound="jsd", hard=False):
    """-(MI bound of Eq. 6, averaged over positions); also returns V for the segmentation."""
    b = local.shape[0]
    if b < 2:
        raise ValueError("InfoSeg needs at least 2 images per batch: negatives come from other images")
    v = probabilities(local, glob, tau)
    scores = pair_scores(local, assignment(v, glob, hard))
    eye = torch.eye(b, dtype=torch.bool, device=local.device)
    positive, negative = scores[eye], scores[~eye]
    return -BOUNDS[bound](positive, negative), v


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    """One InfoSeg epoch: both steps on every batch (Sec. 4); no clustering pass, no augmentation.

    infoseg.objective: iic (Table 2) replaces the MI step by IIC's objective on the
    segmentation step's V of PiCIE's two views of the batch.
    """
    t0 = time.perf_counter()
    amp = use_amp(p, device)

    def step(x, times):
        t = now(device)
        if p.infoseg.objective == "iic":
            x1, x2, theta = augment(x, p, g)
            times["augment"] += now(device) - t
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                v = model(torch.cat([x1, x2])).float()
            v1, v2 = v[: len(x1)], v[len(x1):]
            if theta is not None:
                v2 = apply_geometric(v2, theta, v1.shape[-1])
            mi = iic_mutual_information(v1, v2, p.iic.displacement)
            return -mi, {"mi": mi.detach()}
        x = resize(x, p.data.res)
        times["augment"] += now(device) - t
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            local, glob = model.features(x)
        loss, _ = infoseg_loss(local.float(), glob.float(), p.infoseg.tau, p.infoseg.bound,
                               p.infoseg.assignment == "hard")
        return loss, {}

    return run_batches(model, images, p, g, device, epoch, step, [optimizer], t0)
