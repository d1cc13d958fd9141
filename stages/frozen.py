"""Stage `frozen`: the frozen backbone's features of what a frozen method trains and is scored on (STEGO's
five crops of the training images, the validation images), computed once -> features/frozen.h5
(lib/frozen.py). DVC re-runs it only for the data, the backbone, its weights and levels, the resolution and
the crops, never for a seed or a head's or loss's setting. For a method that trains its backbone, or with
frozen.cache off, an empty file, written without starting torch."""
import h5py
import typer

from lib import methods
from lib.cli import setup, user_errors
from lib.io import atomic_path

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(data: str = REQUIRED, out: str = REQUIRED, params: str = "params.yaml"):
    p = setup(params, compute=False).p
    if not methods.cached(p):
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["levels"] = 0  # lib/frozen.Cache reads it as "nothing cached"
        why = "frozen.cache is off" if methods.spec(p.method).frozen else f"method {p.method} trains its backbone"
        print(f"{why}: nothing cached -> {out}")
        return
    from lib.frozen import write

    s = setup(params, data)
    net = methods.build_unseeded(s.p, s.prepared.channels).net.to(s.device)  # the frozen trunk, cached
    sources = methods.get(p.method).frozen_sources(s.prepared, p)  # what the method trains and is scored on
    need = write(out, net, sources, p.data.res, p.runtime.inference_batch, s.device, p.frozen.dtype)
    print(f"{need / 2 ** 20:.1f} MiB of frozen features -> {out}")


if __name__ == "__main__":
    typer.run(main)
