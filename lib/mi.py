"""Mutual-information objectives of the compared methods, written once.

- `iic_mutual_information`: IIC's exact MI of discrete assignments, from the
  joint distribution of the cluster of a pixel in one view and of the pixels
  around it (displacements up to `displacement`) in the other view.
- `jsd_bound`, `dv_bound`: lower bounds on the MI of continuous features from
  discriminator scores of positive (joint) and negative (product of
  marginals) pairs; InfoSeg uses the Jensen-Shannon one (Eq. 7-8), the
  Donsker-Varadhan one is its Table 2 ablation.
"""
import math

import torch
import torch.nn.functional as F

from lib.distributed import all_sum

EPS = 1e-8


def joint_distribution(p1, p2, displacement=0):
    """Symmetric K x K joint of the assignments p1, p2 (B, K, H, W) over pixel pairs
    (x in view 1, x + d in view 2) for every |d| <= displacement (a cross-correlation)."""
    k = p1.shape[1]
    # batch -> channels: one conv sums over images and pixels for every displacement
    joint = F.conv2d(p1.transpose(0, 1), p2.transpose(0, 1), padding=displacement).sum((2, 3))
    assert joint.shape == (k, k)
    # Under torch.distributed each process holds its rows of the batch: the joint is the sum over all of
    # them, as one process's (its gradient reaches every process's rows: lib/distributed.all_sum)
    joint = all_sum(joint)
    joint = (joint + joint.t()) / 2
    return joint / joint.sum().clamp_min(EPS)


def iic_mutual_information(p1, p2, displacement=0):
    """I(z; z') of IIC (Eq. 1): sum P_ij log(P_ij / (P_i P_j)), in nats."""
    joint = joint_distribution(p1, p2, displacement).clamp_min(EPS)
    pi, pj = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    return (joint * (joint.log() - pi.log() - pj.log())).sum()


def jsd_bound(positive, negative):
    """Jensen-Shannon MI estimate (Hjelm et al.), log 2 offsets included so that it lies in
    [-inf, 2 log 2]: E_pos[log 2 - sp(-T)] - E_neg[sp(-T) + T - log 2]."""
    log2 = math.log(2.0)
    return (log2 - F.softplus(-positive)).mean() - (F.softplus(-negative) + negative - log2).mean()


def dv_bound(positive, negative):
    """Donsker-Varadhan MI estimate: E_pos[T] - log E_neg[exp T]."""
    return positive.mean() - (torch.logsumexp(negative.flatten(), 0) - math.log(negative.numel()))
