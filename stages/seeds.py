"""Run the current params over several seeds; write mean +- std.

    python -m stages.seeds --seeds 0 --seeds 1 --seeds 2               # the params in the workspace
    python -m stages.seeds --seeds 0 --seeds 1 -S loss.cross=false     # an ablation, over two seeds
    python -m stages.seeds -S method=iic --target evaluate              # only up to the scores

Runs the pipeline once per seed (`-S seed=N` and the given settings), each in a copy of the workspace
that shares its DVC cache (lib/study/runner.py, the study's runner: the workspace is left alone, and a
seed whose stages ran before is checked out of DVC's run cache), then writes reports/seeds.md (a table
of every headline metric, mean +- sample std) and metrics/seeds.json (flat), and re-renders the report
(`dvc repro -s -f report`), which embeds the table. Needs a git repository: a run copies the files git
lists.
"""
from pathlib import Path
from typing import List

import typer

from lib.cli import user_errors
from lib.errors import ParamsError
from lib.io import atomic_path, write_json
from lib.pipeline import cmd_option
from lib.study.runner import dvc, run
from lib.study.stats import aggregate, flat
from lib.study.tables import seeds_markdown


@user_errors
def main(seeds: List[int] = typer.Option([0, 1, 2], "--seeds", help="seeds to run"),
         set_param: List[str] = typer.Option([], "-S", "--set-param", help="key=value, as for dvc exp run"),
         target: str = typer.Option("", help="a stage to reproduce up to (e.g. evaluate); default: all"),
         out: str = "reports/seeds.md", metrics: str = "metrics/seeds.json"):
    runs = []
    for seed in seeds:
        print(f"seeds: seed {seed}", flush=True)
        runs.append(run([*set_param, f"seed={seed}"], [target] if target else []))
    stats = aggregate(runs)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(seeds_markdown(stats, seeds, set_param))
    write_json(metrics, flat(stats))
    for key, (m, s, n) in stats.items():
        print(f"{key:>20}: {m:6.2f} +- {s:5.2f}  ({n} runs)")
    print(f"-> {out}, {metrics}")
    if Path(cmd_option("report", "out")).is_file():  # the report embeds the table: render it again
        try:
            dvc("repro", "--single-item", "--force", "report")
        except ParamsError as e:
            print(f"note: the report was not re-rendered ({str(e).splitlines()[0]}); `dvc repro` first")


if __name__ == "__main__":
    typer.run(main)
