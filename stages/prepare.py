"""Stage `prepare`: build the dataset named by data.name into data/prepared."""
import typer

from lib.cli import setup, user_errors
from lib.data import Prepared, pixel_stats, prepare
from lib.io import atomic_dir, write_json

REQUIRED = typer.Option(..., help="a path, given by the stage's cmd in dvc.yaml")


@user_errors
def main(out: str = REQUIRED, metrics: str = REQUIRED, params: str = "params.yaml"):
    s = setup(params, compute=False)
    with atomic_dir(out) as tmp:
        meta = prepare(s.p, tmp, s.workers)
    stats = pixel_stats(Prepared(out))
    write_json(metrics, stats)
    print(f"prepared {meta['name']}: {meta['splits']} images at {meta['res']} px, "
          f"{len(meta['classes'])} classes -> {out}")


if __name__ == "__main__":
    typer.run(main)
