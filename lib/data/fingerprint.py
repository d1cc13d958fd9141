"""What DVC cannot see by itself: the files under `data.root`.

`data.root` is a param (a path), so DVC re-runs `prepare` when the path
changes, but not when images are added to, removed from or changed inside
the folder it names. The `fingerprint` stage (always run, a directory walk
that reads no image) lists every file there by relative path, size and
modification time and writes their digest; `prepare` depends on that file, so
DVC re-prepares exactly when the folder's contents changed. The embedded
dataset is made from params alone: its fingerprint is constant.
"""
import hashlib
import os
from pathlib import Path

from lib.data.base import DataError


def fingerprint(name, root):
    """{'files', 'bytes', 'digest'} of the files under root (hidden files and folders left out)."""
    if name == "textures":
        return {"files": 0, "bytes": 0, "digest": "embedded: made from params.yaml alone"}
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data.root is not a folder (data.name: {name})")
    h, files, size = hashlib.md5(), 0, 0
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for file_name in sorted(n for n in names if not n.startswith(".")):
            path = Path(folder, file_name)
            try:
                st = path.stat()
            except OSError as e:  # a dangling link: listed, so that fixing it counts as a change
                st = path.lstat()
                h.update(f"{path.relative_to(root).as_posix()}\tunreadable {e.errno}\n".encode())
                continue
            h.update(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            files, size = files + 1, size + st.st_size
    return {"files": files, "bytes": size, "digest": h.hexdigest()}
