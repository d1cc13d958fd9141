"""Stage `knn`: the nearest neighbours of each training crop by the frozen backbone's global feature, for a
method that pairs images with them (STEGO), from the frozen stage's cache where frozen.cache is on; computed
once, and again only when the data, the backbone or its weights change. For the other methods an empty
table, written without starting torch."""
import numpy as np
import typer

from lib import methods
from lib.cli import setup, user_errors
from lib.io import atomic_path

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, frozen_features: str = REQUIRED, out: str = REQUIRED, params: str = "params.yaml"):
    p = setup(params, compute=False).p
    table = np.zeros((0, 0), dtype=np.int32)
    if methods.spec(p.method).neighbours:
        table = _compute(params, data, frozen_features)
        print(f"{len(table)} training crops, {table.shape[1]} nearest neighbours each -> {out}")
    else:
        print(f"method {p.method} pairs no images with neighbours: an empty table -> {out}")
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.save(f, table)


def _compute(params, data, frozen_features):
    from lib.frozen import Cache

    s = setup(params, data)
    model = methods.build_unseeded(s.p, s.prepared.channels).to(s.device)  # (its head is built, not used)
    cache = Cache(frozen_features, "train") if methods.cached(s.p) else None  # the trunk's levels, computed once
    return methods.get(s.p.method).neighbours(model, s.prepared.images("train"), s.p, s.device, cache)


if __name__ == "__main__":
    typer.run(main)
