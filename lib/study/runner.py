"""One run of the pipeline with `-S` style settings, away from the workspace, by DVC's public commands.

A run copies the workspace (the files git lists: tracked, and untracked but not ignored; what a commit of
it would hold) into a folder of its own under the system's temporary directory, points that copy at the
workspace's DVC cache (`dvc cache dir --local`), writes the settings into its params.yaml and runs
`dvc repro` there up to the targets. Stages whose params and deps an earlier run had are checked out of
DVC's run cache instead of run again (a second scoring of one trained network costs its scoring only).
The run's metrics are read from the copy's metrics files, and the copy is removed.

Nothing is written into the workspace, and nothing of DVC's own layout is read: a run killed mid-way (a
lost session) leaves only its folder, which the next run removes (it holds the process id of its owner).
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from lib.config import apply_settings
from lib.errors import ParamsError
from lib.pipeline import DVC_YAML, outputs, stages
from lib.study.design import HEADLINE

PREFIX = "pipeline-run-"  # the copies' folders under the temporary directory
OWNER = "owner.pid"


def dvc(*args, cwd="."):
    """Run a dvc command with this interpreter's DVC; its stdout, or a ParamsError with its output."""
    print("$ dvc " + " ".join(args), flush=True)
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise ParamsError(f"`dvc {' '.join(args)}` failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout


def metric_files(dvc_yaml=DVC_YAML):
    """{stem: path} of the metrics files dvc.yaml declares whose stem has headline keys (design.HEADLINE)."""
    return {Path(path).stem: path for st in stages(dvc_yaml).values() for path in outputs(st)
            if Path(path).stem in HEADLINE and path.endswith(".json")}


def stems_made_up_to(target, dvc_yaml=DVC_YAML):
    """The metrics (stems of metric_files) that `dvc repro target` writes: those of target and of every
    stage whose outputs it depends on, transitively."""
    found = stages(dvc_yaml)
    if target not in found:
        raise ParamsError(f"--target {target!r}: no such stage in {dvc_yaml} ({', '.join(found)})")
    made_by = {path: name for name, st in found.items() for path in outputs(st)}
    todo, ran = [target], set()
    while todo:
        name = todo.pop()
        if name not in ran:
            ran.add(name)
            todo += [made_by[d] for d in found[name].get("deps", []) if d in made_by]
    return {stem for stem, path in metric_files(dvc_yaml).items() if made_by.get(path) in ran}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_stale_copies(root=None):
    """Remove the copies that killed runs left (their owner is gone); the names of those removed."""
    removed = []
    for d in sorted(Path(root or tempfile.gettempdir()).glob(PREFIX + "*")):
        try:
            pid = int((d / OWNER).read_text())
        except (OSError, ValueError):
            pid = None
        if pid is None or not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed


def _workspace_files(repo):
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise ParamsError(f"{repo}: not a git repository; runs copy the files git lists of it") from None
    return [name for name in listed.decode().split("\0") if name]


@contextlib.contextmanager
def workspace_copy(repo=".", root=None):
    """A copy of the workspace at `repo` that uses its DVC cache (and run cache); removed on exit."""
    repo = Path(repo).resolve()
    cache = dvc("cache", "dir", cwd=repo).strip()
    clear_stale_copies(root)
    top = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    try:
        (top / OWNER).write_text(str(os.getpid()))
        work = top / "work"
        for name in _workspace_files(repo):
            src = repo / name
            if src.is_file():  # a tracked file deleted in the workspace is not in a commit of it either
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, work / name)
        dvc("cache", "dir", "--local", str(Path(repo, cache).resolve()), cwd=work)
        # no git in the copy (provenance comes from the workspace), and outputs linked from the cache, not copied
        local = (("core.no_scm", "true"), ("core.autostage", "false"), ("cache.type", "reflink,hardlink,copy"))
        for key, value in local:
            dvc("config", "--local", key, value, cwd=work)
        yield work
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run(settings, targets=(), repo=".", root=None):
    """`dvc repro targets` (every stage when none) with settings (`key=value`, read as `dvc exp run -S`
    reads them) on top of the workspace's params.yaml; {stem: metrics} of the stages it reproduced."""
    with workspace_copy(repo, root) as work:
        params = work / "params.yaml"
        params.write_text(yaml.safe_dump(apply_settings(yaml.safe_load(params.read_text()), settings),
                                         sort_keys=False))
        dvc("repro", *targets, cwd=work)
        files = metric_files(work / DVC_YAML)
        made = set().union(*(stems_made_up_to(t, work / DVC_YAML) for t in targets)) if targets else set(files)
        return {stem: json.loads((work / path).read_text()) if (work / path).is_file() else {}
                for stem, path in files.items() if stem in made}
