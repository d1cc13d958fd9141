"""The fidelity study (PiCIE Tables 1, 5, 6, 7): every configuration x seed as a DVC experiment.

    python -m stages.study                                  # seeds 0-4 on the reporting data (data.seed 0)
    python -m stages.study --seeds 0 --seeds 1 --only "defaults,method=iic"
    python -m stages.study --data-seed 1 --only "cluster.bn=train loss.temperature=0.1"   # a tuning candidate
    python -m stages.study --collect                        # run nothing: tables from the recorded runs
    python -m stages.study --data "data.name=folder data.root=/data/mine" --only "defaults,method=iic"
                                                            # other data: reports/outside.md

Runs each configuration of lib/study/design.CONFIGS (params.yaml plus its
-S settings) with each seed, one at a time up to the evaluate and probe
stages (lib/study/runner.py: in a copy of the workspace, which is left
alone), seed by seed so that paired differences appear early. Each finished run is appended to the results file (committed with the
project; a run is identified by the params it ran with, and one already
there is skipped), and reports/fidelity.md (the claims, and the controlled
experiments of lib/study/design.EXPERIMENTS) with its figure
reports/study/fidelity.png, reports/methods.md and reports/ablations.md (the
reporting variant) and reports/tuning.md (the tuning variant) are written
from it after every run. Stop it at any time and run it again, here or on
another machine, to go on. The work is lib/study's.
"""
import time
from pathlib import Path
from typing import List

import torch
import typer

from lib.cli import user_errors
from lib.pipeline import git_rev, stage_deps
from lib.study.design import CONFIGS, REPORTING, TARGETS, TUNING
from lib.study.records import append_run, digest, effective_params, read_runs, run_key
from lib.study.runner import dvc, run
from lib.study.tables import FIGURES, write_tables


def run_one(config, seed, data_seed, settings):
    """One study run: the stages up to evaluate and probe with the configuration's settings; its metrics
    by stem."""
    return run([f"seed={seed}", f"data.seed={data_seed}", *settings], TARGETS)


def known_settings(option, text, keys, also=""):
    """`key=value key=value` (-S style) of params.yaml keys, as a list; an unknown key is refused."""
    settings = text.split()
    runtime = [kv for kv in settings if kv.startswith("runtime.")]
    if runtime:
        raise typer.BadParameter(f"{option}: {runtime[0]!r} is a runtime setting, which names no configuration "
                                 "(a run computes the same under any): set it in params.yaml's runtime section")
    bad = [kv for kv in settings if "=" not in kv or kv.split("=", 1)[0] not in keys]
    if bad:
        raise typer.BadParameter(f"{option}: {bad[0]!r} is not a `key=value` setting of a params.yaml key{also}")
    return settings


def chosen_configs(only, keys):
    """--only's configurations: names of lib/study/design.CONFIGS, or any `key=value ...` settings of known
    keys."""
    if not only:
        return dict(CONFIGS)
    out = {}
    for name in only.split(","):
        name = name.strip()
        out[name] = CONFIGS[name] if name in CONFIGS else known_settings(
            "--only", name, keys, f" nor a configuration of the study ({', '.join(CONFIGS)})")
    return out


@user_errors
def main(seeds: List[int] = typer.Option([0, 1, 2, 3, 4], "--seeds", help="seeds (paired across configurations)"),
         data_seed: int = typer.Option(REPORTING, help=f"data.seed: {REPORTING} is the reporting variant (fidelity.md, "
                                                       f"methods.md, ablations.md), {TUNING} the tuning one (tuning.md)"),
         only: str = typer.Option("", help="comma-separated configurations: the study's names, or -S style "
                                           "`key=value key=value` settings (default: the study's all)"),
         data: str = typer.Option("", help="other data for every configuration, as -S settings (e.g. "
                                           "'data.name=folder data.root=/data/mine data.val_fraction=0.4'); "
                                           "its tables go to reports/outside.md"),
         results: str = typer.Option("reports/study/runs.jsonl", help="the committed record of finished runs"),
         collect: bool = typer.Option(False, help="run nothing: write the tables from the recorded runs"),
         out_dir: str = typer.Option("reports", help="where fidelity.md, methods.md, ablations.md, tuning.md go"),
         params: str = "params.yaml"):
    text = Path(params).read_text()
    base = effective_params(text, [])
    chosen = chosen_configs(only, base)
    extra = known_settings("--data", data, base)
    # the data's settings (its root included) are part of a run's identity, as every other param
    flats = {c: effective_params(text, extra + settings) for c, settings in {**CONFIGS, **chosen}.items()}
    digests = {c: digest(flat) for c, flat in flats.items()}
    runs = read_runs(results, base)
    done = {run_key(r["digest"], r["seed"], r["data_seed"]) for r in runs}
    for seed in [] if collect else seeds:
        for config, settings in chosen.items():
            if run_key(digests[config], seed, data_seed) in done:
                continue
            print(f"study: {config} seed {seed} data.seed {data_seed}", flush=True)
            t = time.perf_counter()
            metrics = run_one(config, seed, data_seed, extra + settings)
            record = {"config": config, "settings": extra + settings, "seed": seed, "data_seed": data_seed,
                      "params": flats[config], "digest": digests[config], "commit": git_rev(short=True),
                      "method": flats[config]["method"], "metrics": metrics,
                      "wall_s": round(time.perf_counter() - t, 1),
                      # CPU kernels differ by instruction set (AVX2 / AVX-512): seeds run on mixed machines
                      "cpu": torch.backends.cpu.get_cpu_capability()}
            append_run(results, record)
            runs.append(record)
            done.add(run_key(digests[config], seed, data_seed))  # another name for the same params: run once
            write_tables(runs, digests, base, results, out_dir, data, data_seed)
    write_tables(runs, digests, base, results, out_dir, data, data_seed)
    print(f"{len(runs)} runs in {results} -> {out_dir}/" + ("outside.md" if data else
                                                            "fidelity.md, methods.md, ablations.md, tuning.md")
          + f" and {out_dir}/{FIGURES['outside.md' if data else 'fidelity.md']}")
    missing = [d for d in stage_deps("report") if not Path(d).exists()]
    if missing:  # a fresh clone, say: the pipeline has not run here
        print(f"study: the report is not re-rendered ({missing[0]} is missing): `dvc repro report` embeds the tables")
    else:
        dvc("repro", "--single-item", "--force", "report")


if __name__ == "__main__":
    typer.run(main)
