"""What DVC cannot see by itself: the files a dataset reads under `data.root`.

`data.root` is a param (a path), so DVC re-runs `prepare` when the path
changes, but not when images are added to, removed from or changed inside
the folder it names. The `fingerprint` stage (always run, a directory walk
that reads no image) lists every file the dataset reads (its module's
`reads`: e.g. COCO-Stuff's four image and annotation folders, not the rest of
the root) by relative path, size and modification time, and writes their
digest; `prepare` depends on that file, so DVC re-prepares exactly when the
data it reads changed. The embedded dataset is made from params alone: its
fingerprint is constant.

Links are followed (a dataset folder is often a link to a larger disk), each
real folder once: a link back to a folder above it lists nothing twice.
"""
import hashlib
import os
from pathlib import Path

from lib.data import protocol, reads
from lib.data.base import DataError


def fingerprint(data):
    """{'files', 'bytes', 'digest'} of the files the dataset `data['name']` reads under data['root'] (the
    data section of params, as a dict); hidden files and folders left out."""
    name, root = data["name"], Path(data["root"])
    if not protocol(name).root:
        return {"files": 0, "bytes": 0, "digest": "embedded: made from params.yaml alone"}
    if not root.is_dir():
        raise DataError(f"{root}: data.root is not a folder (data.name: {name})")
    h, files, size, seen = hashlib.md5(), 0, 0, set()
    for rel in reads(data):
        top = root / rel
        if not top.exists():  # listed, so that adding it counts as a change (prepare names what is missing)
            h.update(f"{rel}\tmissing\n".encode())
            continue
        for path in [top] if top.is_file() else _files(top, seen):
            try:
                st = path.stat()
            except OSError as e:  # a dangling link: listed, so that fixing it counts as a change
                h.update(f"{path.relative_to(root).as_posix()}\tunreadable {e.errno}\n".encode())
                continue
            h.update(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            files, size = files + 1, size + st.st_size
    return {"files": files, "bytes": size, "digest": h.hexdigest()}


def _files(top, seen):
    """The files under the folder `top` in sorted order, links followed, each real folder walked once."""
    for folder, subfolders, names in os.walk(top, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link (a loop, or two links to one folder)
            subfolders[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        yield from (Path(folder, n) for n in sorted(names) if not n.startswith("."))
