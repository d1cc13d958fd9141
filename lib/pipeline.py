"""What dvc.yaml declares, read from there: each stage's params, dependencies and outputs.

dvc.yaml is the one place that says what a stage depends on. Code that needs
the same facts (the resume key of an interrupted training, the metrics files
of an experiment) reads them here instead of restating them.
"""
import hashlib
import json
import shlex
import subprocess
from pathlib import Path

import yaml

from lib.errors import ParamsError

DVC_YAML = "dvc.yaml"


def stages(dvc_yaml=DVC_YAML):
    path = Path(dvc_yaml)
    try:
        return yaml.safe_load(path.read_text())["stages"]
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None


def stage(name, dvc_yaml=DVC_YAML):
    found = stages(dvc_yaml)
    if name not in found:
        raise ParamsError(f"{dvc_yaml}: no stage {name!r} ({', '.join(found)})")
    return found[name]


def _path(entry):
    """A deps/outs/metrics entry: a path, or {path: options}."""
    return str(next(iter(entry))) if isinstance(entry, dict) else str(entry)


def cmd_option(name, option, dvc_yaml=DVC_YAML):
    """The value the stage's cmd passes for --option (e.g. the train stage's --out: the model file)."""
    argv = shlex.split(stage(name, dvc_yaml)["cmd"])
    flag = "--" + option.replace("_", "-")
    if flag not in argv[:-1]:
        raise ParamsError(f"{dvc_yaml}: stage {name!r} passes no {flag}")
    return argv[argv.index(flag) + 1]


def outputs(st):
    """Every path a stage writes: outs, metrics and plots."""
    return [_path(o) for kind in ("outs", "metrics", "plots") for o in st.get(kind, [])]


def stage_params(params, name, dvc_yaml=DVC_YAML):
    """{entry: value} for every entry the stage lists under `params:` (a section or a dotted key),
    read from the nested dict params. An entry that params lacks is an error, never left out."""
    picked = {}
    for entry in stage(name, dvc_yaml).get("params", []):
        node = params
        for part in str(entry).split("."):
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{dvc_yaml}: stage {name!r} lists params {entry!r}, which the params lack")
            node = node[part]
        picked[str(entry)] = node
    return picked


def stage_deps(name, dvc_yaml=DVC_YAML):
    """The paths of a stage's `deps:`, as dvc.yaml lists them."""
    return [_path(d) for d in stage(name, dvc_yaml).get("deps", [])]


def _files(path):
    path = Path(path)
    return sorted(f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts) if path.is_dir() \
        else [path]


def deps_digest(name, dvc_yaml=DVC_YAML, whole_bytes=64 << 10):
    """A hash of what the stage's `deps:` hold now (paths relative to dvc.yaml's folder). Code and small
    files count by their bytes, large data files by name and size (hashing gigabytes of prepared images
    at every start would cost more than the epoch it saves; DVC itself re-runs the stage when they change)."""
    root = Path(dvc_yaml).parent
    h = hashlib.sha256()
    for dep in sorted(stage_deps(name, dvc_yaml)):
        for f in _files(root / dep):
            size = f.stat().st_size if f.is_file() else -1
            h.update(f"{f.relative_to(root).as_posix()}\0{size}\0".encode())
            if 0 <= size <= whole_bytes or (size > 0 and f.suffix == ".py"):
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def git_rev(short=False):
    """The commit the workspace is at ('unknown' outside a git repository): provenance of results."""
    args = ["git", "rev-parse"] + (["--short"] if short else []) + ["HEAD"]
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def params_digest(params):
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
