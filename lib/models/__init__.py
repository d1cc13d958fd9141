from lib.models.fpn import RawRGB, SegmentationNet, build_model
from lib.models.heads import AssignmentNet
from lib.models.infoseg import InfoSegNet

__all__ = ["SegmentationNet", "build_model", "build_from_arch", "AssignmentNet", "InfoSegNet"]


def build_from_arch(arch):
    """Rebuild a network (random weights) from the `arch()` dict saved with it."""
    kind = arch["kind"]
    if kind == "fpn":
        return SegmentationNet(arch["backbone"], "", arch["dim"], arch["levels"], arch["in_chans"])
    if kind == "rgb":
        return RawRGB(arch["in_chans"])
    if kind == "assign":
        return AssignmentNet(build_from_arch(arch["net"]), arch["k"], arch["k_over"])
    if kind == "infoseg":
        return InfoSegNet(arch["k"], arch["dim"], arch["width"], arch["in_chans"], arch["tau"])
    raise ValueError(f"unknown network kind {kind!r}")
