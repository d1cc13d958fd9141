from lib.models.fpn import SegmentationNet, build_model

__all__ = ["SegmentationNet", "build_model"]
