"""Run the current params over several seeds with DVC's experiment queue; write mean +- std.

    python -m stages.seeds --seeds 0 --seeds 1 --seeds 2               # the params in the workspace
    python -m stages.seeds --seeds 0 --seeds 1 -S loss.cross=false     # an ablation, over two seeds
    python -m stages.seeds -S method=iic --target evaluate              # only up to the scores

Queues one experiment per seed (`dvc exp run --queue -S seed=N -n <prefix>-sN [target]`),
runs the queue (`dvc exp run --run-all`), reads each experiment's metrics back
from `dvc exp show --json`, and writes reports/seeds.md (a table of every
headline metric, mean +- sample std) and metrics/seeds.json (flat), then
re-renders the report (`dvc repro -s -f report`), which embeds the table.
Needs a git repository with a commit (DVC's queue runs experiments from it
plus the workspace's changes).
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import List

import typer
import yaml

from lib.cli import user_errors
from lib.errors import ParamsError
from lib.io import atomic_path, write_json
from lib.seeds import HEADLINE, aggregate, flat, markdown

METRIC_FILES = {stem: f"metrics/{stem}.json" for stem in HEADLINE}


def _dvc(*args):
    cmd = [sys.executable, "-m", "dvc", *args]
    print("$ dvc " + " ".join(args), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise ParamsError(f"`dvc {' '.join(args)}` failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout


def stems_made_up_to(target, dvc_yaml="dvc.yaml"):
    """The metrics (stems of METRIC_FILES) that `dvc repro target` writes: those of target and of every
    stage whose outputs it depends on, transitively."""
    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    if target not in stages:
        raise ParamsError(f"--target {target!r}: no such stage in {dvc_yaml} ({', '.join(stages)})")
    made_by = {str(next(iter(o)) if isinstance(o, dict) else o): name
               for name, st in stages.items() for o in st.get("outs", []) + st.get("metrics", [])}
    todo, ran = [target], set()
    while todo:
        name = todo.pop()
        if name not in ran:
            ran.add(name)
            todo += [made_by[d] for d in stages[name].get("deps", []) if d in made_by]
    return {stem for stem, path in METRIC_FILES.items() if made_by.get(path) in ran}


def experiment_metrics(show, names):
    """{name: {"eval": {...}, "probe": {...}, ...}} for the named experiments in `dvc exp show --json`;
    None for one that failed (DVC then shows the metrics files of the commit it started from)."""
    found = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") in names and isinstance(node.get("data"), dict):
                metrics = node["data"].get("metrics") or {}
                found[node["name"]] = None if node.get("error") else {
                    stem: (metrics.get(path) or {}).get("data", {}) for stem, path in METRIC_FILES.items()}
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(show)
    return found


@user_errors
def main(seeds: List[int] = typer.Option([0, 1, 2], "--seeds", help="seeds to run"),
         set_param: List[str] = typer.Option([], "-S", "--set-param", help="key=value, as for dvc exp run"),
         prefix: str = typer.Option("seeds", help="experiment names are <prefix>-s<seed>"),
         target: str = typer.Option("", help="a stage to reproduce up to (e.g. evaluate); default: all"),
         out: str = "reports/seeds.md", metrics: str = "metrics/seeds.json"):
    names = [f"{prefix}-s{s}" for s in seeds]
    existing = experiment_metrics(json.loads(_dvc("exp", "show", "--json")), set(names))
    if existing:  # a re-run replaces the experiments of the same names
        _dvc("exp", "remove", *sorted(existing))
    for seed, name in zip(seeds, names):
        args = ["exp", "run", "--queue", "-n", name, "-S", f"seed={seed}"]
        for kv in set_param:
            args += ["-S", kv]
        _dvc(*args, *([target] if target else []))
    _dvc("exp", "run", "--run-all")
    runs = experiment_metrics(json.loads(_dvc("exp", "show", "--json")), set(names))
    missing = [n for n in names if runs.get(n) is None]
    if missing:
        raise ParamsError(f"experiment(s) {', '.join(missing)} failed or left no metrics: see "
                          f"`dvc queue logs {missing[0]}`")
    if target:  # metrics files of the stages not run are the workspace's, not the experiment's: left out
        made = stems_made_up_to(target)
        runs = {n: {stem: m for stem, m in r.items() if stem in made} for n, r in runs.items()}
    stats = aggregate([runs[n] for n in names])
    with atomic_path(out) as tmp:
        Path(tmp).write_text(markdown(stats, seeds, set_param))
    write_json(metrics, flat(stats))
    for key, (m, s, n) in stats.items():
        print(f"{key:>20}: {m:6.2f} +- {s:5.2f}  ({n} runs)")
    print(f"-> {out}, {metrics}")
    if Path("reports/report.md").is_file():  # the report embeds the table: render it again
        try:
            _dvc("repro", "--single-item", "--force", "report")
        except ParamsError as e:
            print(f"note: the report was not re-rendered ({str(e).splitlines()[0]}); `dvc repro` first")


if __name__ == "__main__":
    typer.run(main)
