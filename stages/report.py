"""Stage `report`: reports/report.md with scores, read-outs, curves, colour overlays and retrieval."""
import json
import shutil
from pathlib import Path
from typing import List

import h5py
import numpy as np
import typer

from lib.cli import setup, user_errors
from lib.config import as_dict
from lib.io import atomic_path
from lib.metrics import majority
from lib.report import markdown, plot_curves, plot_overlays
from lib.retrieval import plot_retrieval, retrieve

# made outside the pipeline, over many experiments (`python -m stages.study`, `python -m stages.seeds`), which then
# re-render the report; embedded when they exist, so they are not dependencies of the stage
TABLES = ("reports/fidelity.md", "reports/methods.md", "reports/ablations.md", "reports/tuning.md", "reports/outside.md",
          "reports/seeds.md")

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, details: str = REQUIRED,
         predictions: str = REQUIRED, train_metrics: str = REQUIRED,
         live_dir: str = REQUIRED, confusion_png: str = REQUIRED,
         probe_metrics: str = REQUIRED, retrain_metrics: str = REQUIRED,
         features: str = REQUIRED,
         tables: List[str] = typer.Option(list(TABLES), "--tables", help="tables embedded where they exist"),
         out: str = REQUIRED, figures: str = REQUIRED, params: str = "params.yaml"):
    s = setup(params, data, compute=False)
    p, prepared = s.p, s.prepared
    evaluation = json.loads(Path(details).read_text())
    preds = np.load(predictions, mmap_mode="r")
    n = min(p.report.images, len(preds))  # the RGB channels are shown (not Potsdam's IR)
    pick = np.linspace(0, len(preds) - 1, n).round().astype(int)
    labels = prepared.labels("val")
    fig_dir = Path(figures)
    shutil.rmtree(fig_dir, ignore_errors=True)
    fig_dir.mkdir(parents=True)
    # the paper's Figure 3: each cluster in the colour of its majority ground-truth class
    colours = majority(evaluation["histogram"]) if evaluation.get("histogram") else None
    plot_overlays(prepared.images("val")[pick][..., :3], None if labels is None else labels[pick], preds[pick],
                  colours, evaluation["classes"], fig_dir / "overlays.png")
    plot_curves(live_dir, fig_dir / "curves.png")
    rel = {"overlays": "figures/overlays.png", "curves": "figures/curves.png",
           "confusion": Path(confusion_png).name, "retrieval": "figures/retrieval.png"}
    if p.report.queries:
        queries, retrieved, sims = retrieve(features, p.report.queries, p.report.retrieved, p.seed)
        with h5py.File(features, "r") as f:
            stride = int(f.attrs["stride"])  # of the dumped features: 4, or a vision transformer's patch
        plot_retrieval(prepared.images("val"), prepared.images("train"), queries, retrieved, sims, stride,
                       fig_dir / "retrieval.png", labels, evaluation["classes"], preds, evaluation.get("mapping"))
    readouts = {name: json.loads(Path(f).read_text()) for name, f in
                (("probe", probe_metrics), ("retrain", retrain_metrics)) if Path(f).is_file()}
    text = markdown(prepared.meta, as_dict(p), json.loads(Path(train_metrics).read_text()), evaluation, rel,
                    readouts, retrieval=p.report.queries > 0,
                    tables=[Path(t).read_text() for t in tables if Path(t).is_file()])
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    print(f"report -> {out}")


if __name__ == "__main__":
    typer.run(main)
