"""Runs over seeds as DVC experiments, and their mean and spread: the statistics the paper's single
runs lack (PiCIE issue 3). `python -m stages.seeds` is the command; this is its library."""
import json
import math
import subprocess
import sys
from pathlib import Path

from lib.errors import ParamsError
from lib.pipeline import DVC_YAML, outputs, stages

# metrics file stem -> its headline keys, in table order
HEADLINE = {
    "eval": ("acc", "miou", "things_acc", "things_miou", "stuff_acc", "stuff_miou"),
    "probe": ("acc", "miou"),
    "retrain": ("acc", "miou", "c_acc", "c_miou"),
    "train": ("final_loss",),  # not its times: wall times belong to a bench on an idle machine, not here
}


def metric_files(dvc_yaml=DVC_YAML):
    """{stem: path} of the metrics files dvc.yaml declares whose stem has HEADLINE keys."""
    return {Path(path).stem: path for st in stages(dvc_yaml).values() for path in outputs(st)
            if Path(path).stem in HEADLINE and path.endswith(".json")}


def dvc(*args):
    """Run a dvc command with this interpreter's DVC; its stdout, or a ParamsError with its output."""
    print("$ dvc " + " ".join(args), flush=True)
    out = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise ParamsError(f"`dvc {' '.join(args)}` failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout


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


def experiment_metrics(show, names, files):
    """{name: {"eval": {...}, "probe": {...}, ...}} for the named experiments in `dvc exp show --json`
    (files: {stem: metrics path}); None for one that failed (DVC then shows the metrics files of the
    commit it started from)."""
    found = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") in names and isinstance(node.get("data"), dict):
                metrics = node["data"].get("metrics") or {}
                found[node["name"]] = None if node.get("error") else {
                    stem: (metrics.get(path) or {}).get("data", {}) for stem, path in files.items()}
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(show)
    return found


def run_experiments(seeds, set_param=(), prefix="seeds", target=""):
    """One queued DVC experiment per seed (named <prefix>-s<seed>), all run; {name: metrics by stem}
    of each, only the stems that the stages up to `target` wrote. A failed experiment is an error."""
    files = metric_files()
    names = [f"{prefix}-s{s}" for s in seeds]
    existing = experiment_metrics(json.loads(dvc("exp", "show", "--json")), set(names), files)
    if existing:  # a re-run replaces the experiments of the same names
        dvc("exp", "remove", *sorted(existing))
    for seed, name in zip(seeds, names):
        args = ["exp", "run", "--queue", "-n", name, "-S", f"seed={seed}"]
        for kv in set_param:
            args += ["-S", kv]
        dvc(*args, *([target] if target else []))
    dvc("exp", "run", "--run-all")
    runs = experiment_metrics(json.loads(dvc("exp", "show", "--json")), set(names), files)
    missing = [n for n in names if runs.get(n) is None]
    if missing:
        raise ParamsError(f"experiment(s) {', '.join(missing)} failed or left no metrics: see "
                          f"`dvc queue logs {missing[0]}`")
    if target:  # metrics files of the stages not run are the workspace's, not the experiment's: left out
        made = stems_made_up_to(target)
        runs = {n: {stem: m for stem, m in r.items() if stem in made} for n, r in runs.items()}
    return [runs[n] for n in names]


def aggregate(runs):
    """runs: one {"eval": {...}, "probe": {...}, ...} per seed -> {"eval.acc": (mean, sample std, n)}.

    The std is the sample standard deviation (n - 1 in the denominator), 0 for one run;
    a metric missing or null in some runs is aggregated over the others.
    """
    out = {}
    for stem, keys in HEADLINE.items():
        for key in keys:
            values = [r[stem][key] for r in runs if isinstance(r.get(stem, {}).get(key), (int, float))]
            if not values:
                continue
            n = len(values)
            mean = sum(values) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
            out[f"{stem}.{key}"] = (mean, std, n)
    return out


def flat(stats):
    """{"eval.acc": (m, s, n)} -> {"eval.acc_mean": m, "eval.acc_std": s, ...}: for metrics files."""
    out = {}
    for key, (m, s, n) in stats.items():
        out[f"{key}_mean"], out[f"{key}_std"], out[f"{key}_n"] = round(m, 4), round(s, 4), n
    return out


def markdown(stats, seeds, overrides=()):
    lines = ["# Mean +- std over seeds", "",
             f"Seeds {', '.join(map(str, seeds))}" + (f"; params set: {', '.join(overrides)}" if overrides else "")
             + ". Sample standard deviation (n - 1).", "",
             "| metric | mean +- std | runs |", "|---|---|---|"]
    for key, (m, s, n) in stats.items():
        lines.append(f"| {key} | {m:.2f} +- {s:.2f} | {n} |")
    return "\n".join(lines) + "\n"
