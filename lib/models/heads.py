"""Cluster heads on pixel features, for the methods whose network predicts assignments (IIC)."""
import torch
import torch.nn as nn


class ClusterHeads(nn.Module):
    """Soft assignments (B, k, h, w) of the main head and, with k_over > 0, the auxiliary one."""

    def __init__(self, dim, k, k_over=0):
        super().__init__()
        self.heads = nn.ModuleList([nn.Conv2d(dim, k, 1)] + ([nn.Conv2d(dim, k_over, 1)] if k_over else []))

    def forward(self, z):
        return [torch.softmax(h(z), 1) for h in self.heads]


class AssignmentNet(nn.Module):
    """A feature network plus cluster heads; forward gives the main head's probabilities
    (what is scored, by argmax), embed the features under the heads (probe, neighbours)."""

    scoring = "argmax"  # evaluated by the argmax of its own assignments

    def __init__(self, net, k, k_over=0):
        super().__init__()
        self.net, self.heads = net, ClusterHeads(net.dim, k, k_over)
        self.dim, self.in_chans, self.k, self.k_over = k, net.in_chans, k, k_over
        self.embed_dim = net.embed_dim
        self.backbone_name = net.backbone_name

    def forward(self, x, normalize=True):
        # the heads read the FPN output before L2 normalisation: on unit vectors a fresh head's logits are
        # ~0.1, its assignments near uniform, where the MI and its gradient vanish (IIC never left it)
        return self.heads(self.net(x, normalize=False))[0]

    def embed(self, x, normalize=True):
        return self.net(x, normalize=normalize)

    def arch(self):
        return {"kind": "assign", "net": self.net.arch(), "k": self.k, "k_over": self.k_over}
