"""Stage `report`: reports/report.md with scores, curves and colour overlays."""
import json
import shutil
from pathlib import Path

import numpy as np
import typer

from lib.cli import user_errors
from lib.config import as_dict, load_params
from lib.data import Prepared
from lib.io import atomic_path
from lib.report import markdown, plot_curves, plot_overlays


@user_errors
def main(data: str = "data/prepared", details: str = "results/evaluation.json",
         predictions: str = "results/predictions.npy", train_metrics: str = "metrics/train.json",
         live_dir: str = "reports/train", confusion_png: str = "reports/confusion.png",
         out: str = "reports/report.md", figures: str = "reports/figures", params: str = "params.yaml"):
    p = load_params(params)
    prepared = Prepared(data)
    evaluation = json.loads(Path(details).read_text())
    preds = np.load(predictions, mmap_mode="r")
    n = min(p.report.images, len(preds))  # the RGB channels are shown (not Potsdam's IR)
    pick = np.linspace(0, len(preds) - 1, n).round().astype(int)
    labels = prepared.labels("val")
    fig_dir = Path(figures)
    shutil.rmtree(fig_dir, ignore_errors=True)
    fig_dir.mkdir(parents=True)
    plot_overlays(prepared.images("val")[pick][..., :3], None if labels is None else labels[pick], preds[pick],
                  np.array(evaluation["mapping"]) if evaluation.get("mapping") else None,
                  evaluation["classes"], fig_dir / "overlays.png")
    plot_curves(live_dir, fig_dir / "curves.png")
    rel = {"overlays": "figures/overlays.png", "curves": "figures/curves.png",
           "confusion": Path(confusion_png).name}
    text = markdown(prepared.meta, as_dict(p), json.loads(Path(train_metrics).read_text()), evaluation, rel)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    print(f"report -> {out}")


if __name__ == "__main__":
    typer.run(main)
