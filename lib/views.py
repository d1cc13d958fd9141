"""The views a batch is seen in, and their forward pass (PiCIE Sec. 3.2, Eq. 10-11).

For a batch x: P1, P2 photometric transforms and G a geometric one, drawn
per image from the run's generator; view 1 = f(G(P1(x))), view 2 =
G(f(P2(x))), so that a pixel of view 1 and the same pixel of view 2 see
the same content. Every method that trains on two views of a batch (PiCIE,
IIC, InfoSeg's IIC objective) takes them from here; one view (`views=1`) is
view 1 alone, as Modified DeepCluster sees its images.
"""
import torch
import torch.nn.functional as F

from lib.distributed import own_rows
from lib.transforms import apply_geometric, photometric, resize, sample_geometric


def augment(x, p, g, views=2):
    """Draw P1, (P2,) and G for a batch: returns (input of view 1, input of view 2 or None, G or None).

    x holds training images at data.train_res; both views come out at data.res
    (PiCIE on COCO: crops of the 640 px image for view 1, the image resized to
    320 for view 2). The draws are made in this order: P1, P2, G.
    """
    x1 = photometric(x, g, p.aug.hue) if p.aug.photometric else x
    x2 = None
    if views == 2:
        x2 = photometric(x, g, p.aug.hue) if p.aug.photometric else x
    theta = None
    if p.aug.geometric:
        theta = sample_geometric(x.shape[0], g, scale=(p.aug.crop_scale, 1.0), measure=p.aug.crop_measure)
        x1 = apply_geometric(x1, theta, p.data.res)
    else:
        x1 = resize(x1, p.data.res)
    if x2 is None:
        return x1, None, None
    return x1, resize(x2, p.data.res), theta


def forward_views(model, x1, x2, theta, amp=False, normalize=True):
    """z1 = f(G(P1 x)) and z2 = G(f(P2 x)) (None without a second view), both (B, C, H/4, W/4); unit
    norm over C with normalize=True, or what the network gives before it (IIC's heads take that).

    Both views go through the network as one batch of 2B: one pass is faster
    than two, and batch-norm sees both views. Under torch.distributed the views
    are the whole batch's, drawn alike by every process, and each process
    forwards its own rows of them (lib/distributed): z1, z2 are those rows'.
    """
    x1, x2, theta = own_rows(x1, x2, theta)
    b = x1.shape[0]
    if x2 is None:
        with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=amp):
            return model(x1, normalize).float(), None
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=amp):
        z = model(torch.cat([x1, x2]), normalize)
    z = z.float()
    z1, z2 = z[:b], z[b:]
    if theta is not None:
        z2 = apply_geometric(z2, theta, z1.shape[-1])
        z2 = F.normalize(z2, dim=1) if normalize else z2
    return z1, z2
