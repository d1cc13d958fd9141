"""Stage `fingerprint`: the digest of the files the dataset reads under data.root, so that `prepare` re-runs
when they change (lib/data/fingerprint.py). Always run by DVC; cheap (file sizes and times, no image is read,
no torch imported)."""
import typer

from lib.cli import setup, user_errors
from lib.config import as_dict
from lib.data.fingerprint import fingerprint
from lib.io import write_json


@user_errors
def main(out: str = typer.Option(..., help="the fingerprint (JSON), a dep of prepare"), params: str = "params.yaml"):
    p = setup(params, compute=False).p
    fp = fingerprint(as_dict(p.data))
    write_json(out, fp)
    print(f"{p.data.name} {p.data.root or '(embedded)'}: {fp['files']} files, {fp['bytes']} bytes -> {out}")


if __name__ == "__main__":
    typer.run(main)
