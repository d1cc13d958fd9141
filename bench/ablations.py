"""The README's results table: baselines, PiCIE and its ablations, mean +- std over seeds.

    python bench/ablations.py [--seeds 0 1] [--only picie,no_cross] [--out reports/ablations.md]

Each row runs the pipeline's own stage code (train -> dump -> cluster ->
evaluate) with params.yaml plus the row's overrides, into runs/ablations/,
on the prepared dataset in data/prepared (run `dvc repro prepare` first).
A finished run is not re-run, so the script can be stopped and restarted.
"""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import typer
import yaml

ROWS = {  # name -> (description, overrides)
    "rgb": ("raw-RGB k-means", {"model.backbone": "rgb", "model.weights": "", "train.epochs": 0}),
    "untrained": ("untrained network (ImageNet) + k-means", {"train.epochs": 0}),
    "picie": ("PiCIE", {}),
    "no_cross": ("PiCIE, loss.cross=false", {"loss.cross": False}),
    "no_geometric": ("PiCIE, aug.geometric=false", {"aug.geometric": False}),
    "k_over": ("PiCIE + H, cluster.k_over=32", {"cluster.k_over": 32}),
}
COLUMNS = ("acc", "miou", "things_miou", "stuff_miou")


def _params(base, overrides, seed):
    raw = yaml.safe_load(Path(base).read_text())
    for key, value in {**overrides, "seed": seed}.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return raw


def run_one(name, overrides, seed, base, data, root):
    out = Path(root) / f"{name}-s{seed}"
    if (out / "eval.json").is_file():
        return json.loads((out / "eval.json").read_text()), json.loads((out / "train.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    params = out / "params.yaml"
    params.write_text(yaml.safe_dump(_params(base, overrides, seed), sort_keys=False))
    common = ["--params", str(params)]
    steps = [
        ["stages.train", "--data", data, "--out", f"{out}/model.pt", "--metrics", f"{out}/train.json",
         "--live-dir", f"{out}/live", "--checkpoint", f"{out}/checkpoint.pt"],
        ["stages.dump", "--data", data, "--model-path", f"{out}/model.pt", "--out", f"{out}/features.h5"],
        ["stages.cluster", "--features", f"{out}/features.h5", "--out", f"{out}/centroids.npy"],
        ["stages.evaluate", "--data", data, "--features", f"{out}/features.h5", "--centroids",
         f"{out}/centroids.npy", "--metrics", f"{out}/eval.json.tmp", "--details", f"{out}/evaluation.json",
         "--predictions", f"{out}/predictions.npy", "--confusion-png", f"{out}/confusion.png"],
    ]
    for step in steps:
        print(f"[{name} seed {seed}] {step[0]}", flush=True)
        subprocess.run([sys.executable, "-m", *step, *common], check=True, stdout=subprocess.DEVNULL)
    (out / "features.h5").unlink()  # the only large file; the metrics are what the table needs
    (out / "eval.json.tmp").rename(out / "eval.json")
    return json.loads((out / "eval.json").read_text()), json.loads((out / "train.json").read_text())


def _cell(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(seeds: list[int] = typer.Option([0, 1]), only: str = "", params: str = "params.yaml",
         data: str = "data/prepared", root: str = "runs/ablations", out: str = "reports/ablations.md"):
    names = [n for n in ROWS if not only or n in only.split(",")]
    lines = [f"| method | {' | '.join(COLUMNS)} | s / epoch |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name in names:
        desc, overrides = ROWS[name]
        results = [run_one(name, overrides, s, params, data, root) for s in seeds]
        cells = [_cell([r[0].get(c) for r in results]) for c in COLUMNS]
        cells.append(_cell([r[1].get("epoch_time_s") for r in results]))
        lines.append(f"| {desc} | {' | '.join(cells)} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + f"\n\nmean ± std over seeds {', '.join(map(str, seeds))}; metrics in %.\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(table)
    print(table)


if __name__ == "__main__":
    typer.run(main)
