"""Atomic writes: a stage that fails half way must never leave a corrupt artifact.

Every writer goes to a temporary file in the destination's folder and is
renamed into place only once complete (rename is atomic on POSIX). A process
killed mid-write (SIGKILL runs no cleanup) leaves its temporary behind; the
next write of the same destination removes it first, so leftovers never
accumulate (at COCO scale a prepared dataset's is tens of GB).
"""
import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale(path, suffix=""):
    """Remove the temporaries an interrupted writer of `path` left: `.NAME.XXXXXXXX[SUFFIX]` (the 8
    random characters of mkstemp / mkdtemp) and `.NAME.old` (atomic_dir's swap)."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"([a-z0-9_]{8}" + re.escape(suffix) + "|old)")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*") if path.parent.is_dir() else ():
        if pattern.fullmatch(stale.name):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside `path`; move it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix or path.suffix
    remove_stale(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); an artifact gets the user's mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; swap it in for `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700); an artifact folder gets the user's mode
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_figure(fig, path, **kw):
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), **kw)
    plt.close(fig)
