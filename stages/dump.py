"""Stage `dump`: pixel features to HDF5, sized to stay practical at COCO scale.

    /val/features    float16 (N_val, d, h, w): every validation pixel, for evaluation
    /train/features  float16 (M, d): a seeded sample of M = dump.train_points training pixels
    /train/index     int32 (M, 3): (image, y, x) of each sampled pixel, at feature resolution

Full training maps would not fit (COCO: 49k x 128 x 80 x 80 x 2 bytes ~ 80 GB);
a bounded sample is all that k-means needs. Provenance is in the attributes.
"""
import datetime
import json

import h5py
import numpy as np
import typer

from lib.checkpoint import file_digest, load_model
from lib.cli import setup, user_errors
from lib.config import recorded_params
from lib.features import gather_pixel_features, iter_features, sample_pixel_index
from lib.io import atomic_path
from lib.pipeline import git_rev

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, model_path: str = REQUIRED, out: str = REQUIRED,
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
        for i, z in iter_features(model, val, p.runtime.inference_batch, device, "dump val"):
            vf[i:i + len(z)] = z.numpy().astype(np.float16)

        train = prepared.images("train")
        index = sample_pixel_index(len(train), fres, fres, p.dump.train_points, p.seed)
        tf = f.create_dataset("train/features", (len(index), c), dtype="float16")
        f.create_dataset("train/index", data=index)
        gather_pixel_features(model, train, index, p.runtime.inference_batch, device, p.data.res, out=tf, desc="dump train")
        shapes = vf.shape, tf.shape
        f.attrs["val_shape"], f.attrs["train_shape"] = shapes
    print(f"dumped {shapes[0]} val and {shapes[1]} train features -> {out}")


if __name__ == "__main__":
    typer.run(main)
