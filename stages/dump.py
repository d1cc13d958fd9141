"""Stage `dump`: pixel features to HDF5, sized to stay practical at COCO scale.

    /val/features    float16 (N_val, d, h, w): every validation pixel, for evaluation
    /train/features  float16 (M, d): a seeded sample of M = dump.train_points training pixels
    /train/index     int32 (M, 3): (image, y, x) of each sampled pixel, at feature resolution

Full training maps would not fit (COCO: 49k x 128 x 80 x 80 x 2 bytes ~ 80 GB);
a bounded sample is all that k-means needs. Provenance is in the attributes. A
method that reads the frozen stage's cache (frozen.cache) gets the validation
images' outputs from their cached trunk levels.
"""
import datetime
import json

import h5py
import numpy as np
import torch
import typer

from lib.checkpoint import file_digest, load_model
from lib.cli import setup, user_errors
from lib.config import recorded_params
from lib.features import gather_pixel_features, iter_features, sample_pixel_index
from lib.frozen import Cache
from lib.io import atomic_path
from lib.methods import cached
from lib.pipeline import git_rev

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, model_path: str = REQUIRED, frozen_features: str = REQUIRED, out: str = REQUIRED,
         params: str = "params.yaml"):
    s = setup(params, data)
    p, device, prepared = s.p, s.device, s.prepared
    model, _ = load_model(model_path, device)
    fres = p.data.res // model.stride
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"model": model_path, "model_md5": file_digest(model_path), "backbone": model.backbone_name,
                        "method": p.method, "classifier": p.model.classifier,
                        "channels": model.out_channels, "stride": model.stride, "res": p.data.res, "dataset": prepared.meta["name"],
                        "params": json.dumps(recorded_params(p)), "git_rev": git_rev(),
                        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        val = prepared.images("val")
        c = model.out_channels  # features, or a network's own assignments (IIC, InfoSeg)
        vf = f.create_dataset("val/features", (len(val), c, fres, fres), dtype="float16", chunks=(1, c, fres, fres))
        for i, z in val_outputs(model, val, p, device, frozen_features):
            vf[i:i + len(z)] = z.numpy().astype(np.float16)

        train = prepared.images("train")
        index = sample_pixel_index(len(train), fres, fres, p.dump.train_points, p.seed)
        tf = f.create_dataset("train/features", (len(index), c), dtype="float16")
        f.create_dataset("train/index", data=index)
        gather_pixel_features(model, train, index, p.runtime.inference_batch, device, p.data.res, out=tf, desc="dump train")
        shapes = vf.shape, tf.shape
        f.attrs["val_shape"], f.attrs["train_shape"] = shapes
    print(f"dumped {shapes[0]} val and {shapes[1]} train features -> {out}")


def val_outputs(model, val, p, device, frozen_features):
    """(index of the first image, the network's outputs (B, c, h, w) on the CPU) of the validation images:
    from the frozen stage's cache of their trunk levels where the run reads it, else by the whole network."""
    if not cached(p):
        yield from iter_features(model, val, p.runtime.inference_batch, device, "dump val")
        return
    cache = Cache(frozen_features, "val", expected=len(val))
    with torch.no_grad():
        for i in range(0, len(val), p.runtime.inference_batch):
            ids = np.arange(i, min(i + p.runtime.inference_batch, len(val)))
            yield i, model.eval().forward_levels(cache.levels(ids, device)).float().cpu()


if __name__ == "__main__":
    typer.run(main)
