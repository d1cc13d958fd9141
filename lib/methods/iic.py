"""IIC for segmentation (Ji et al. 2019; FACTS.md section 3), as PiCIE compared it.

Heads on the shared pixel features: a main head of K clusters and an
auxiliary over-clustering head (`k_over`, 45 in PiCIE's runs), each a 1x1
convolution and a softmax over clusters. The objective is the mutual
information between a pixel's assignment in view 1 and the assignments of it
and its neighbours (`displacement`, at feature resolution) in view 2, after
view 2 is mapped by the same geometric transform as view 1 (the views of
lib/picie.forward_views). Both heads' MI are maximised, summed.
"""
import time

from lib.loop import now, run_batches, use_amp
from lib.mi import iic_mutual_information
from lib.picie import augment, forward_views


def iic_loss(heads, z1, z2, displacement=1):
    """-(sum over heads of I(view-1 assignment; view-2 assignment around it)); also the per-head MI."""
    total, parts = 0.0, {}
    for i, (p1, p2) in enumerate(zip(heads(z1), heads(z2))):
        mi = iic_mutual_information(p1, p2, displacement)
        total = total - mi
        parts["mi" if i == 0 else "mi_over"] = mi.detach()
    return total, parts


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    """One IIC epoch: no clustering pass; the heads' MI between PiCIE's two views of each batch."""
    t0 = time.perf_counter()
    amp = use_amp(p, device)

    def step(x, times):
        t = now(device)
        views = augment(x, p, g)
        times["augment"] += now(device) - t
        z1, z2 = forward_views(model.net, *views, amp=amp, normalize=False)  # raw: the heads' input
        return iic_loss(model.heads, z1, z2, p.iic.displacement)

    return run_batches(model, images, p, g, device, epoch, step, [optimizer], t0)
