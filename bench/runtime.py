"""What a runtime setting can change in a stage's outputs: the inference batch and the thread count,
measured on the trained run's network (not a test: it prints what it finds).

    python bench/runtime.py                       # after `dvc repro` (models/model.pt, data/prepared)
    python bench/runtime.py --batches 1 --batches 8 --batches 32 --threads 1 --threads 2
    python bench/runtime.py --stages --batches 32 --batches 1     # and the dump, cluster, evaluate stages

For each inference batch (runtime.inference_batch) and each thread count (runtime.threads), the
validation features as the dump stage computes them, against those at the first batch and thread
count listed: the largest difference of the float32 features, the share of the float16 values the dump
stores that differ, and the share of pixels the scored classifier (models/classifier.npy) labels
otherwise. Batch norm runs on its running statistics in every inference pass, so the batch can change a
value only through how the kernels (oneDNN's convolutions, the matrix products) block and order their
sums. With --stages, the dump, cluster and evaluate stages run again at each inference batch (into a
temporary folder; the workspace's outputs are left alone), and their scores are printed.
"""
import json
import sys
import tempfile
from pathlib import Path
from typing import List

import numpy as np
import torch
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.checkpoint import load_model  # noqa: E402
from lib.clustering import predict_clusters  # noqa: E402
from lib.config import load_params  # noqa: E402
from lib.data import Prepared  # noqa: E402
from lib.features import iter_features  # noqa: E402
from lib.pipeline import cmd_option  # noqa: E402
from stages import cluster as cluster_stage, dump as dump_stage, evaluate as evaluate_stage  # noqa: E402


def features(model, images, batch, threads):
    torch.set_num_threads(threads)
    return torch.cat([z for _, z in iter_features(model, images, batch, torch.device("cpu"), f"batch {batch}")])


def stage_scores(batch, params, tmp):
    """acc and mIoU of the dump, cluster and evaluate stages run at runtime.inference_batch = batch."""
    raw = yaml.safe_load(Path(params).read_text())
    raw["runtime"]["inference_batch"] = batch
    run = Path(tmp) / f"batch{batch}"
    run.mkdir()
    (run / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ppath, data, model = str(run / "params.yaml"), cmd_option("dump", "data"), cmd_option("dump", "model_path")
    dump_stage.main(data=data, model_path=model, out=str(run / "f.h5"), params=ppath)
    cluster_stage.main(features=str(run / "f.h5"), out=str(run / "clf.npy"), params=ppath)
    evaluate_stage.main(data=data, features=str(run / "f.h5"), model_path=model, classifier=str(run / "clf.npy"),
                        metrics=str(run / "eval.json"), details=str(run / "d.json"), predictions=str(run / "p.npy"),
                        confusion_png=str(run / "c.png"), params=ppath)
    m = json.loads((run / "eval.json").read_text())
    return m["acc"], m["miou"], np.load(run / "p.npy")


def main(batches: List[int] = typer.Option([32, 1, 8, 64], "--batches", help="the first is the reference"),
         threads: List[int] = typer.Option([0, 1], "--threads", help="0: all cores; the first is the reference"),
         images: int = typer.Option(64, help="validation images compared"),
         stages: bool = typer.Option(False, help="also run dump, cluster and evaluate at each batch"),
         params: str = "params.yaml"):
    p = load_params(params)
    prepared = Prepared(cmd_option("dump", "data"))
    model, _ = load_model(cmd_option("dump", "model_path"))
    clf = torch.from_numpy(np.load(cmd_option("cluster", "out")))
    val = prepared.images("val")[:images]
    every = torch.get_num_threads()
    threads = [t or every for t in threads]
    print(f"{len(val)} validation images at {p.data.res} px, {p.method} on {p.model.backbone}; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {every} cores; reference: batch {batches[0]}, "
          f"{threads[0]} threads")
    ref = features(model, val, batches[0], threads[0])
    print(f"{'batch':>6} {'threads':>8} {'max |dz| float32':>17} {'float16 values differing':>25} "
          f"{'pixels labelled otherwise':>26}")
    ref_labels = predict_clusters(ref.half().float(), clf, p.data.res)  # as evaluate scores the dump's float16
    for b, t in [(b, threads[0]) for b in batches[1:]] + [(batches[0], t) for t in threads[1:]]:
        z = features(model, val, b, t)
        d32 = float((z - ref).abs().max())
        d16 = float((z.half() != ref.half()).float().mean())
        moved = float((predict_clusters(z.half().float(), clf, p.data.res) != ref_labels).float().mean())
        print(f"{b:>6} {t:>8} {d32:>17.3g} {d16:>25.3g} {moved:>26.3g}")
    torch.set_num_threads(every)
    if stages:
        with tempfile.TemporaryDirectory() as tmp:
            scored = {b: stage_scores(b, params, tmp) for b in batches}
        ref_preds = scored[batches[0]][2]
        print(f"{'batch':>6} {'acc':>9} {'mIoU':>9} {'predictions differing':>22}  (dump, cluster, evaluate)")
        for b, (acc, miou, preds) in scored.items():
            print(f"{b:>6} {acc:>9.4f} {miou:>9.4f} {float((preds != ref_preds).mean()):>22.3g}")


if __name__ == "__main__":
    typer.run(main)
