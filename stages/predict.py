"""Segment your own images with a trained run (a command, not a DVC stage).

    python -m stages.predict photos/ more/img.jpg --out predictions/

Writes predictions/labels/<name>.png (matched class ids where the run was
scored with labels, else cluster ids), predictions/overlays/<name>.jpg
(colour overlay with a legend of the classes or clusters shown), and
predictions/skipped.txt listing the files that could not be read.
"""
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, List, Optional

import numpy as np
import torch
import typer

from lib.checkpoint import load_model
from lib.cli import pick_device, setup, user_errors
from lib.errors import DataError
from lib.io import atomic_path
from lib.methods import spec
from lib.pipeline import cmd_option
from lib.predict import collect, run
from lib.scoring import Scorer, protocol, score_kind


@user_errors
def main(images: List[str] = typer.Argument(..., help="image files and/or folders of images"),
         out: str = "predictions",
         model_path: str = typer.Option("", help="default: the train stage's --out in dvc.yaml"),
         classifier: str = typer.Option("", help="default: the cluster stage's --out in dvc.yaml"),
         evaluation: str = typer.Option("", help="default: the evaluate stage's --details in dvc.yaml"),
         batch_size: int = typer.Option(0, help="images per forward pass (0: runtime.inference_batch of --params)"),
         device: str = typer.Option("", help="auto | cpu | cuda (default: runtime.device of --params)"),
         res: int = typer.Option(0, help="short side the images are resized to (0: the run's data.res)"),
         flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="default: eval.flip of --params")] = None,
         crf: Annotated[Optional[bool], typer.Option("--crf/--no-crf", help="default: eval.crf of --params")] = None,
         params: Annotated[str, typer.Option(help="its eval section says how pixels are labelled, its runtime "
                                                  "section where")] = "params.yaml"):
    model_path = model_path or cmd_option("train", "out")  # the pipeline's files, as dvc.yaml names them
    classifier = classifier or cmd_option("cluster", "out")
    evaluation = evaluation or cmd_option("evaluate", "details")
    s = setup(params)
    dev = pick_device(device) if device else s.device
    model, run_params = load_model(model_path, dev)
    if getattr(model, "in_chans", 3) != 3:
        raise DataError(f"{model_path} takes {model.in_chans} channels (R, G, B, IR); predict reads RGB images")
    clf = torch.from_numpy(np.load(classifier)).float()
    mapping, classes = None, None
    ev = Path(evaluation)
    if ev.is_file():
        detail = json.loads(ev.read_text())
        if detail.get("mapping") and len(detail["mapping"]) == len(clf):
            mapping, classes = detail["mapping"], detail["classes"]
    files = collect(images)
    side = res or run_params["data"]["res"]
    e = s.p.eval
    e = SimpleNamespace(**{**vars(e), "flip": e.flip if flip is None else flip, "crf": e.crf if crf is None else crf})
    kind = score_kind(run_params["model"]["classifier"], spec(run_params["method"]).outputs)
    print(f"{len(files)} images, short side {side} px, {len(clf)} clusters"
          f"{', named by ' + evaluation if mapping else ''}, device {dev}; labelled with {protocol(e)}", flush=True)
    with Scorer(clf, kind, e, model, dev, s.workers) as scorer:
        written, skipped = run(files, out, model, scorer, side, batch_size or s.p.runtime.inference_batch, dev,
                               mapping, classes)
    with atomic_path(Path(out) / "skipped.txt") as tmp:
        tmp.write_text("".join(f"{f}\t{why}\n" for f, why in skipped))
    print(f"{written} segmented -> {out}/labels, {out}/overlays; {len(skipped)} skipped"
          f"{' (see ' + out + '/skipped.txt)' if skipped else ''}")


if __name__ == "__main__":
    typer.run(main)
