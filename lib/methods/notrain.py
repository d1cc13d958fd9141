"""No training (PiCIE Table 1's 'No Train' rows): the network as initialised (ImageNet weights, or
the raw-colour baseline with model.backbone: rgb), its features clustered by k-means and scored by
the nearest centroid (or, with model.classifier: linear, a linear classifier on the k-means labels).
A method with no train_one_epoch: the train stage saves the network untouched."""
from lib.models import describe as describe_network, feature_network


def build(p, in_chans=3):
    return feature_network(p, in_chans)


def describe(params):
    return [describe_network(params),
            "- no training: the initial network's features are clustered"]
