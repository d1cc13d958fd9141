"""Vision-transformer backbones at COCO-Stuff-27's protocol: one training step of PiCIE and of STEGO, timed,
their peak memory, and the COCO-Stuff-27 runs they project (not a test).

    python bench/vit_step.py                                   # dino_vits8 at 320 px, batch 16, 2 steps each
    python bench/vit_step.py --backbone dinov2_vits14 --batch 8

Each measurement runs in a fresh process (its peak resident memory is its own), on a random-init network
(the time and memory of a forward do not depend on the weights), on random images at the protocol's side
(`data.name: cocostuff27` resolved for the backbone: 320 px for 8 px patches), after one untimed warm-up
step:

- `picie forward`: one no-grad forward of a batch (the clustering pass and the snapshot labels are one
  each per image of an epoch's clustered sample and of the epoch);
- `picie step`: a training step, both views of the batch forward and backward through the whole network;
- `stego step`: STEGO's step (the crops and their partners through the frozen backbone, the head, its loss
  and the probes'); `stego step, cached features`: the same step on features computed beforehand, which is
  what caching the frozen backbone's output would leave of it (STEGO's code recomputes it every step).

Projected, as bench/coco_scale.py projects PiCIE's (49,629 training images, 10 epochs, the protocol's
5,120 clustered images; STEGO trains on five crops of each image):

    picie epoch = forward/img x (5,120 + N) + step/img x N
    stego epoch = step/img x 5 N
"""
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib import methods  # noqa: E402
from lib.config import load_params, set_key  # noqa: E402
from lib.deepcluster import Classifiers, Clustering  # noqa: E402
from lib.methods.picie import picie_loss  # noqa: E402
from lib.methods.stego import probe_losses, stego_loss  # noqa: E402
from lib.views import augment, forward_views  # noqa: E402

COCO_TRAIN, CLUSTERED, EPOCHS = 49_629, 5_120, 10
KINDS = ("picie forward", "picie step", "stego step", "stego step, cached features")


def params(folder, backbone, method, batch):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in {"method": method, "model.backbone": backbone, "model.weights": "", "data.name": "cocostuff27",
                       "data.root": "/unused", "train.batch_size": batch, "cluster.k": 27}.items():
        set_key(raw, key, value)
    path = Path(folder) / f"{method}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


def measure(kind, backbone, batch, steps):
    """Seconds per step (mean of `steps` after a warm-up) and the process's peak resident memory (MiB)."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        p = params(folder, backbone, "stego" if kind.startswith("stego") else "picie", batch)
    model = methods.build(p)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, p.data.res, p.data.res)
    opt = torch.optim.Adam(methods.param_groups(model, p), lr=1e-4)
    cached = model.features(x) if kind == "stego step, cached features" else None
    mu = torch.nn.functional.normalize(torch.randn(27, p.model.dim), dim=1)  # one level of fixed centroids
    clf = Classifiers([Clustering(27, (mu, mu), (None, None))], "prototype", p.model.dim, p.loss.logits,
                      p.loss.temperature)

    def step():
        if kind == "picie forward":
            with torch.no_grad():
                model(x)
            return
        if kind == "picie step":
            z1, z2 = forward_views(model, *augment(x, p, g))
            loss, _ = picie_loss(z1, z2, clf, p)
        else:
            # the crops and their partners (here the batch reversed) through the frozen backbone, or from a cache
            f = cached if cached is not None else model.features(x)
            f_pair = cached.flip(0) if cached is not None else model.features(x.flip(0))
            s, s_pair = model.code(f), model.code(f_pair)
            loss, _ = stego_loss(f, s, f_pair, s_pair, p, g)
            loss = loss + sum(probe_losses(model, s, None))
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - t) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": seconds, "res": p.data.res, "peak_mib": peak}


def main(backbone: str = "dino_vits8", batch: int = 16, steps: int = 2, child: str = typer.Option("", hidden=True)):
    if child:
        print(json.dumps(measure(child, backbone, batch, steps)))
        return
    rows = {}
    for kind in KINDS:
        out = subprocess.run([sys.executable, __file__, "--backbone", backbone, "--batch", str(batch), "--steps",
                              str(steps), "--child", kind], capture_output=True, text=True, check=True)
        rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    res = rows["picie step"]["res"]
    print(f"{backbone} at {res} px, batch {batch}, {torch.get_num_threads()} threads, random init; "
          f"seconds per step (mean of {steps} after a warm-up), peak resident memory of each process:")
    for kind, r in rows.items():
        print(f"  {kind:30s} {r['seconds']:8.2f} s  ({r['seconds'] / batch:6.3f} s an image)  "
              f"{r['peak_mib']:8,.0f} MiB")
    per = {kind: r["seconds"] / batch for kind, r in rows.items()}
    picie = per["picie forward"] * (CLUSTERED + COCO_TRAIN) + per["picie step"] * COCO_TRAIN
    print(f"PiCIE, COCO-Stuff-27: {picie / 3600:.1f} h an epoch, {EPOCHS * picie / 3600:.1f} h for {EPOCHS} epochs "
          f"(training and labelling passes; k-means, dump and evaluation left out)")
    for kind in KINDS[2:]:
        stego = per[kind] * 5 * COCO_TRAIN
        print(f"STEGO ({kind}), COCO-Stuff-27: {stego / 3600:.1f} h an epoch of five-crops "
              f"({EPOCHS * stego / 3600:.1f} h for {EPOCHS})")
    print(f"caching the frozen features: a STEGO step {per['stego step'] / per['stego step, cached features']:.1f}x "
          f"faster; their store for COCO's five-crops at this side, float16: "
          f"{_store_gib(backbone, res):,.0f} GiB")


def _store_gib(backbone, res):
    from lib.config import BACKBONES
    from lib.models.vit import VITS, ViT

    width = ViT(backbone).channels[0] if backbone in VITS else 128
    side = res // BACKBONES[backbone]
    return 5 * COCO_TRAIN * width * side * side * 2 / 2 ** 30


if __name__ == "__main__":
    typer.run(main)
