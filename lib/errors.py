"""Errors a user causes and can fix; every stage prints them as one line, not a traceback."""
import sys


class ParamsError(ValueError):
    """A bad params.yaml: the message names the key."""


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


class WeightsError(ValueError):
    """A missing, unreadable or foreign weights or model file: the message names it."""


class DistributedError(RuntimeError):
    """A training process failed or stopped answering: the message says which, and how to go on."""


def warn(message):
    """Something the run can go on with but the user must hear of: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
