from lib.errors import DataError

IGNORE = 255  # label value of unlabelled pixels, in every dataset

__all__ = ["IGNORE", "DataError"]
