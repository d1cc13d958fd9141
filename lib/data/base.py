IGNORE = 255  # label value of unlabelled pixels, in every dataset


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""
