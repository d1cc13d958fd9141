"""IIC for segmentation (Ji et al., ICCV 2019), as PiCIE compared it (PiCIE Sec. 4, Table 1).

Heads on the shared pixel features: a main head of K clusters and an
auxiliary over-clustering head (`iic.k_over`, 45 in PiCIE's runs), each a 1x1
convolution and a softmax over clusters. The objective is the mutual
information between a pixel's assignment in view 1 and the assignments of it
and its neighbours (`iic.displacement`, at feature resolution) in view 2, after
view 2 is mapped by the same geometric transform as view 1 (lib/views).
`iic.heads` says how the two heads share the training: `alternate`, IIC's
own schedule (its code trains the over-clustering head for one pass over the
data, then the main head for two, and repeats: here epoch e trains the
over-clustering head when e % 3 == 0, the main head otherwise), or `sum`,
both heads' MI maximised at every step. Scored by the main head's own argmax.
"""
import time

import torch
import torch.nn as nn

from lib.loop import now, run_batches, use_amp
from lib.mi import iic_mutual_information
from lib.models import describe as describe_network, feature_network, network_from_arch
from lib.views import augment, forward_views


class ClusterHeads(nn.Module):
    """Soft assignments (B, k, h, w) of the main head and, with k_over > 0, the auxiliary one."""

    def __init__(self, dim, k, k_over=0):
        super().__init__()
        self.heads = nn.ModuleList([nn.Conv2d(dim, k, 1)] + ([nn.Conv2d(dim, k_over, 1)] if k_over else []))

    def forward(self, z):
        return [torch.softmax(h(z), 1) for h in self.heads]


class AssignmentNet(nn.Module):
    """A feature network plus cluster heads. forward gives the main head's probabilities (what is
    dumped: scored by their argmax, and the space the report's nearest neighbours are searched in);
    embed gives the features under the heads (the linear probe and re-training read those)."""

    def __init__(self, net, k, k_over=0):
        super().__init__()
        self.net, self.heads = net, ClusterHeads(net.dim, k, k_over)
        self.k, self.k_over = k, k_over
        self.dim, self.out_channels, self.in_chans = net.dim, k, net.in_chans
        self.backbone_name, self.stride = net.backbone_name, net.stride

    def forward(self, x, normalize=True):
        # the heads read the FPN output before L2 normalisation: on unit vectors a fresh head's logits are
        # tiny, its assignments near uniform, where the MI and its gradient vanish
        return self.heads(self.net(x, normalize=False))[0]

    def embed(self, x, normalize=True):
        return self.net(x, normalize=normalize)

    def arch(self):
        return {"kind": "iic", "net": self.net.arch(), "k": self.k, "k_over": self.k_over}


def build(p, in_chans=3):
    return AssignmentNet(feature_network(p, in_chans), p.cluster.k, p.iic.k_over)


def from_arch(arch):
    return AssignmentNet(network_from_arch(arch["net"]), arch["k"], arch["k_over"])


def active_heads(n_heads, mode, epoch):
    """Indices of the heads (0: main, 1: over-clustering) whose MI an epoch maximises."""
    if mode == "sum" or n_heads == 1:
        return tuple(range(n_heads))
    return (1,) if epoch % 3 == 0 else (0,)  # IIC's order: over-clustering first, then the main head twice


def iic_loss(heads, z1, z2, displacement=1, active=None):
    """-(sum over the active heads (default: all) of I(view-1 assignment; view-2 assignment around it));
    also every head's MI, active or not, so that the logged curves have the same columns every epoch."""
    total, parts = 0.0, {}
    for i, (p1, p2) in enumerate(zip(heads(z1), heads(z2))):
        mi = iic_mutual_information(p1, p2, displacement)
        if active is None or i in active:
            total = total - mi
        parts["mi" if i == 0 else "mi_over"] = mi.detach()
    return total, parts


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    """One IIC epoch: no clustering pass; the active heads' MI between the two views of each batch."""
    t0 = time.perf_counter()
    amp = use_amp(p, device)
    active = active_heads(len(model.heads.heads), p.iic.heads, epoch)
    # a head the epoch does not train is frozen for it: no gradient, no optimiser step (under DDP too,
    # which would otherwise give it a zero gradient, and Adam a step)
    for i, head in enumerate(model.heads.heads):
        head.requires_grad_(i in active)

    def step(x, times):
        t = now(device)
        views = augment(x, p, g)
        times["augment"] += now(device) - t
        z1, z2 = forward_views(model.net, *views, amp=amp, normalize=False)  # raw: the heads' input
        return iic_loss(model.heads, z1, z2, p.iic.displacement, active)

    try:
        return run_batches(model, images, p, g, device, epoch, step, [optimizer], t0)
    finally:
        model.heads.requires_grad_(True)


def describe(params):
    return [describe_network(params),
            f"- IIC: K `{params['cluster']['k']}`, auxiliary over-clustering head `{params['iic']['k_over']}`, "
            f"displacement `{params['iic']['displacement']}`, heads trained `{params['iic']['heads']}`"]
