"""Stage `knn`: the nearest neighbours of each training crop by the frozen backbone's global feature, for a
method that pairs images with them (STEGO); computed once, and again only when the data, the backbone or
its weights change. For the other methods an empty table, written without starting torch."""
import numpy as np
import typer

from lib import methods
from lib.cli import user_errors
from lib.config import load_params
from lib.io import atomic_path

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, out: str = REQUIRED, params: str = "params.yaml"):
    p = load_params(params)
    table = np.zeros((0, 0), dtype=np.int32)
    if methods.spec(p.method).neighbours:
        table = _compute(p, data)
        print(f"{len(table)} training crops, {table.shape[1]} nearest neighbours each -> {out}")
    else:
        print(f"method {p.method} pairs no images with neighbours: an empty table -> {out}")
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.save(f, table)


def _compute(p, data):
    import torch

    from lib.cli import pick_device, set_allocator, set_threads
    from lib.data import Prepared

    set_threads(p.train.threads)
    set_allocator(p.train.allocator)
    torch.manual_seed(0)  # the head is built but not used: only the trunk's weights count
    prepared = Prepared(data)
    device = pick_device(p.train.device)
    model = methods.build(p, prepared.channels).to(device)
    return methods.get(p.method).neighbours(model, prepared.images("train"), p, device)


if __name__ == "__main__":
    typer.run(main)
