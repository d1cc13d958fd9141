"""The fidelity study (PiCIE Tables 1, 5, 6, 7): every configuration x seed as a DVC experiment.

    python -m stages.study                                  # seeds 0-4 on the reporting data (data.seed 0)
    python -m stages.study --seeds 0 --seeds 1 --only "defaults,method=iic"
    python -m stages.study --collect                        # run nothing: tables from the recorded runs

Runs each configuration of lib/study.CONFIGS (params.yaml plus its -S
settings) with each seed, one `dvc exp run --temp` at a time up to the
evaluate and probe stages, seed by seed so that paired differences appear
early. Each finished run is appended to the results file (committed with the
project; runs already there, with the same params.yaml, are skipped), and
reports/fidelity.md (the claims), reports/methods.md and reports/ablations.md
are written from it after every run. Stop it at any time and run it again,
here or on another machine, to go on. The work is lib/study.py's.
"""
import hashlib
import json
import time
from pathlib import Path
from typing import List

import typer
import yaml

from lib.cli import user_errors
from lib.io import atomic_path
from lib.pipeline import cmd_option, git_rev
from lib.seeds import dvc
from lib.study import (CONFIGS, DEFAULT, IIC, MDC, NOTRAIN, PROBE, SCORES, append_run, configs_markdown,
                       fidelity_markdown, read_runs, run_key, run_one)

METHOD_ROWS = (DEFAULT, NOTRAIN, MDC, IIC)


def base_digest(params="params.yaml"):
    """params.yaml without the seeds a study varies: runs of other params are not this study's."""
    raw = yaml.safe_load(Path(params).read_text())
    raw.pop("seed", None)
    raw.get("data", {}).pop("seed", None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:12]


def write_tables(runs, data_seed, results, out_dir="reports"):
    texts = {"fidelity.md": fidelity_markdown(runs, data_seed, results),
             "methods.md": configs_markdown(runs, data_seed, METHOD_ROWS, "Methods compared on the embedded dataset",
                                            SCORES + PROBE + ("train.epoch_time_s",)),
             "ablations.md": configs_markdown(runs, data_seed, [c for c in CONFIGS if c not in METHOD_ROWS[1:]],
                                              "PiCIE's ablations on the embedded dataset", SCORES + PROBE)}
    for name, text in texts.items():
        with atomic_path(Path(out_dir) / name) as tmp:
            tmp.write_text(text)


@user_errors
def main(seeds: List[int] = typer.Option([0, 1, 2, 3, 4], "--seeds", help="seeds (paired across configurations)"),
         data_seed: int = typer.Option(0, help="data.seed: 0 is the reporting variant, 1 the tuning one"),
         only: str = typer.Option("", help="comma-separated configuration names (default: all)"),
         results: str = typer.Option("reports/study/runs.jsonl", help="the committed record of finished runs"),
         collect: bool = typer.Option(False, help="run nothing: write the tables from the recorded runs"),
         out_dir: str = typer.Option("reports", help="where fidelity.md, methods.md and ablations.md go"),
         params: str = "params.yaml"):
    digest = base_digest(params)
    base_method = yaml.safe_load(Path(params).read_text())["method"]
    runs = [r for r in read_runs(results) if r["digest"] == digest]
    done = {run_key(r["config"], r["seed"], r["data_seed"], r["digest"]) for r in runs}
    chosen = [c for c in CONFIGS if not only or c in only.split(",")]
    unknown = set(only.split(",")) - set(CONFIGS) if only else set()
    if unknown:
        raise typer.BadParameter(f"--only: unknown configuration(s) {sorted(unknown)}; known: {list(CONFIGS)}")
    for seed in [] if collect else seeds:
        for config in chosen:
            if run_key(config, seed, data_seed, digest) in done:
                continue
            settings = CONFIGS[config]
            print(f"study: {config} seed {seed} data.seed {data_seed}", flush=True)
            t = time.perf_counter()
            metrics = run_one(config, seed, data_seed, settings)
            method = dict(kv.split("=", 1) for kv in settings).get("method", base_method)
            record = {"config": config, "settings": settings, "seed": seed, "data_seed": data_seed,
                      "digest": digest, "commit": git_rev(short=True), "method": method, "metrics": metrics,
                      "wall_s": round(time.perf_counter() - t, 1)}
            append_run(results, record)
            runs.append(record)
            write_tables(runs, data_seed, results, out_dir)
    write_tables(runs, data_seed, results, out_dir)
    print(f"{len(runs)} runs of these params in {results} -> {out_dir}/fidelity.md, methods.md, ablations.md")
    if Path(cmd_option("report", "out")).is_file():  # the report embeds the tables
        dvc("repro", "--single-item", "--force", "report")


if __name__ == "__main__":
    typer.run(main)
