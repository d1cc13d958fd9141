"""The README's results table: baselines, PiCIE and its ablations, mean +- std over seeds.

    python bench/ablations.py [--seeds 0 --seeds 1] [--only picie,no_cross] [--out reports/ablations.md]

Each row is one call of the seeds command (`python -m stages.seeds`): the
row's `-S` settings, one DVC experiment per seed through the experiment
queue, the whole pipeline each time. Run it from the repository root with the
venv active, on a committed workspace. A row's experiments are named
`<row>-s<seed>` (`dvc exp show` lists them); its statistics land in
runs/ablations/<row>.json.
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import List

import typer

ROWS = {  # name -> (description, -S settings)
    "rgb": ("raw-RGB k-means", ["model.backbone=rgb", "train.epochs=0"]),
    "untrained": ("untrained network (ImageNet) + k-means", ["train.epochs=0"]),
    "picie": ("PiCIE", []),
    "no_cross": ("PiCIE, loss.cross=false", ["loss.cross=false"]),
    "no_geometric": ("PiCIE, aug.geometric=false", ["aug.geometric=false"]),
    "k_over": ("PiCIE + H, cluster.k_over=32", ["cluster.k_over=32"]),
}
# (column title, key of the seeds statistics)
COLUMNS = (("acc", "eval.acc"), ("mIoU", "eval.miou"), ("things mIoU", "eval.things_miou"),
           ("stuff mIoU", "eval.stuff_miou"), ("probe acc", "probe.acc"), ("probe mIoU", "probe.miou"),
           ("retrained C-mIoU", "retrain.c_miou"))


def _cell(stats, key):
    if f"{key}_mean" not in stats:
        return "n/a"
    return f"{stats[key + '_mean']:.2f} ± {stats[key + '_std']:.2f}"


def main(seeds: List[int] = typer.Option([0, 1], "--seeds"), only: str = "", root: str = "runs/ablations",
         out: str = "reports/ablations.md"):
    names = [n for n in ROWS if not only or n in only.split(",")]
    Path(root).mkdir(parents=True, exist_ok=True)
    lines = [f"| method | {' | '.join(c for c, _ in COLUMNS)} |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in names:
        desc, settings = ROWS[name]
        stats_path = Path(root) / f"{name}.json"
        cmd = [sys.executable, "-m", "stages.seeds", "--prefix", name, "--out", str(Path(root) / f"{name}.md"),
               "--metrics", str(stats_path)]
        for s in seeds:
            cmd += ["--seeds", str(s)]
        for kv in settings:
            cmd += ["-S", kv]
        subprocess.run(cmd, check=True)
        stats = json.loads(stats_path.read_text())
        lines.append(f"| {desc} | {' | '.join(_cell(stats, key) for _, key in COLUMNS)} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + (f"\n\nmean ± sample std over seeds {', '.join(map(str, seeds))} "
                                "(DVC experiment queue); metrics in %.\n")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(table)
    print(table)


if __name__ == "__main__":
    typer.run(main)
