"""The README's results tables, mean +- std over seeds, each row a set of DVC experiments.

    python bench/tables.py --table methods   [--seeds 0 --seeds 1 --seeds 2] [--only picie,iic]
    python bench/tables.py --table ablations [--seeds 0 --seeds 1]

- methods: PiCIE's Table 1 rows plus InfoSeg on the embedded dataset, scored
  as each method is (k-means prototypes, a linear classifier on k-means
  labels, or the network's own argmax), with the training time per epoch.
  Experiments stop at `evaluate` (no probe or re-training).
- ablations: baselines, PiCIE and its switches, through the whole pipeline
  (probe and re-training columns).

Each row is one call of the seeds command (`python -m stages.seeds`): the
row's `-S` settings, one experiment per seed through DVC's queue. Run it from
the repository root with the venv active, on a committed workspace, and with
nothing else busy if the time column matters. A row's experiments are named
`<row>-s<seed>` (`dvc exp show` lists them); its statistics land in
runs/<table>/<row>.json and the table in reports/<table>.md.
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import List

import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib import methods  # noqa: E402
from lib.pipeline import cmd_option  # noqa: E402

# name -> (-S settings, what sets the row apart); labels come from the methods' modules (lib.methods.label)
METHOD_ROWS = {  # in the order of PiCIE's Table 1
    "notrain_linear": (["method=notrain", "model.classifier=linear"], "ImageNet"),
    "notrain": (["method=notrain"], "ImageNet"),
    "rgb": (["method=notrain", "model.backbone=rgb"], "raw-RGB"),
    "mdc": (["method=mdc"], ""),
    "iic_shallow": (["method=iic", "model.levels=2"], "first two stages, res12's analogue"),
    "iic": (["method=iic"], ""),
    "picie": ([], ""),
    "picie_h": (["cluster.k_over=32"], "+ H, cluster.k_over=32"),
    "infoseg": (["method=infoseg"], "random init"),
}
ABLATION_ROWS = {
    "rgb": (["method=notrain", "model.backbone=rgb"], "raw-RGB"),
    "untrained": (["method=notrain"], "ImageNet"),
    "picie": ([], ""),
    "no_cross": (["loss.cross=false"], "loss.cross=false"),
    "no_geometric": (["aug.geometric=false"], "aug.geometric=false"),
    "k_over": (["cluster.k_over=32"], "+ H, cluster.k_over=32"),
}
# (column title, key of the seeds statistics, decimals)
SCORES = (("acc", "eval.acc", 2), ("mIoU", "eval.miou", 2), ("things mIoU", "eval.things_miou", 2),
          ("stuff mIoU", "eval.stuff_miou", 2))
TITLES = {"methods": "Methods compared on the embedded dataset", "ablations": "PiCIE's ablations on the embedded dataset"}
TABLES = {  # table -> (rows, columns, stage the experiments stop at)
    "methods": (METHOD_ROWS, SCORES + (("epoch time (s)", "train.epoch_time_s", 1),), "evaluate"),
    "ablations": (ABLATION_ROWS, SCORES + (("probe acc", "probe.acc", 2), ("probe mIoU", "probe.miou", 2),
                                           ("retrained C-mIoU", "retrain.c_miou", 2)), ""),
}


def cell(stats, key, decimals=2):
    if f"{key}_mean" not in stats:
        return "n/a"
    return f"{stats[key + '_mean']:.{decimals}f} ± {stats[key + '_std']:.{decimals}f}"


def row_label(settings, note, params="params.yaml"):
    """'<method label>[ / <classifier>][ (<note>)]' of a row's -S settings, the method's from its module."""
    given = dict(kv.split("=", 1) for kv in settings)
    method = given.get("method", yaml.safe_load(Path(params).read_text())["method"])
    label = methods.label(method, given.get("model.classifier"))
    return f"{label} ({note})" if note else label


def row_line(desc, stats, columns):
    return f"| {desc} | {' | '.join(cell(stats, key, d) for _, key, d in columns)} |"


def render(table, stats_by_row):
    """The markdown table of the rows that have statistics, in the table's row order."""
    rows, columns, _ = TABLES[table]
    lines = [f"# {TITLES[table]}", "", f"| method | {' | '.join(c for c, _, _ in columns)} |",
             "|---" * (len(columns) + 1) + "|"]
    runs = set()
    for name, (settings, note) in rows.items():
        if name in stats_by_row:
            lines.append(row_line(row_label(settings, note), stats_by_row[name], columns))
            runs |= {v for k, v in stats_by_row[name].items() if k.endswith("_n")}
    counts = " or ".join(str(n) for n in sorted(runs)) or "no"
    return "\n".join(lines) + f"\n\nmean ± sample std over {counts} seeds (DVC experiment queue); scores in %.\n"


def main(table: str = typer.Option("methods", help="methods | ablations"),
         seeds: List[int] = typer.Option([0, 1, 2], "--seeds"), only: str = "", root: str = "runs",
         collect: bool = typer.Option(False, help="run nothing: the table of the rows already run"),
         out: str = typer.Option("", help="default: reports/<table>.md")):
    if table not in TABLES:
        raise typer.BadParameter(f"--table must be one of {', '.join(TABLES)}, got {table!r}")
    rows, _, target = TABLES[table]
    folder = Path(root) / table
    folder.mkdir(parents=True, exist_ok=True)
    for name in [] if collect else [n for n in rows if not only or n in only.split(",")]:
        cmd = [sys.executable, "-m", "stages.seeds", "--prefix", name, "--out", str(folder / f"{name}.md"),
               "--metrics", str(folder / f"{name}.json"), "--target", target]
        for s in seeds:
            cmd += ["--seeds", str(s)]
        for kv in rows[name][0]:
            cmd += ["-S", kv]
        subprocess.run(cmd, check=True)
    stats = {n: json.loads((folder / f"{n}.json").read_text()) for n in rows if (folder / f"{n}.json").is_file()}
    text = render(table, stats)
    out = Path(out or f"reports/{table}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    if Path(cmd_option("report", "out")).is_file():  # the report embeds the table
        subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", "--force", "report"], check=False)


if __name__ == "__main__":
    typer.run(main)
