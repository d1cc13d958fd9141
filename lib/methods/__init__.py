"""The methods, chosen by `method`: each is its network and its epoch, everything else shared.

| method  | network                               | epoch                                  | scored by (stages/cluster)    |
|---------|---------------------------------------|----------------------------------------|-------------------------------|
| picie   | backbone + FPN features               | lib/picie (two views, Eq. 10-15)       | model.classifier (prototype)  |
| mdc     | the same                              | lib/picie with one view, linear head   | model.classifier (linear)     |
| iic     | the same + cluster heads (k, k_over)  | lib/methods/iic (MI of the two views)  | the head's argmax             |
| infoseg | InfoSegNet (random init)              | lib/methods/infoseg (segmentation + MI)| its own argmax (Eq. 4)        |
| notrain | backbone + FPN, never trained         | none                                   | model.classifier (prototype)  |
"""
from lib.methods import iic, infoseg
from lib.models import AssignmentNet, InfoSegNet, build_model
from lib import picie

EPOCHS = {"picie": picie.train_one_epoch, "mdc": picie.train_one_epoch, "iic": iic.train_one_epoch,
          "infoseg": infoseg.train_one_epoch}


def build(p, in_chans=3):
    """The network `method` trains, initialised as params say (InfoSeg: randomly, as its paper)."""
    if p.method == "infoseg":
        return InfoSegNet(p.cluster.k, p.infoseg.dim, p.infoseg.width, in_chans, p.infoseg.tau)
    net = build_model(p.model.backbone, p.model.weights, p.model.dim, p.model.levels, in_chans)
    if p.method == "iic":
        return AssignmentNet(net, p.cluster.k, p.iic.k_over)
    return net


def epochs(p):
    """Training epochs of the method: none for notrain."""
    return 0 if p.method == "notrain" else p.train.epochs


def train_one_epoch(model, images, optimizer, p, g, device, epoch):
    return EPOCHS[p.method](model, images, optimizer, p, g, device, epoch)
