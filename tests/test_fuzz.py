"""A seeded batch of malformed and unusual files fed to the folder loader (the `prepare` stage): each is
read right (the colour it was drawn in arrives in the prepared arrays) or refused with one line that
names the file, and a refusal leaves no output and no temporary behind."""
import io
import json
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lib.data import Prepared
from stages import prepare as prepare_stage
from tests.test_data import png_bytes

RES = 16


def _encoded(colour, mode, fmt, size):
    """A flat image of `colour` (RGB) saved in Pillow mode `mode` and format `fmt`; the RGB it should
    read back as."""
    im = Image.new("RGB", size, colour)
    grey = round(0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2])
    expected = {"RGB": colour, "RGBA": colour, "L": (grey,) * 3, "LA": (grey,) * 3, "P": colour,
                "1": (255,) * 3 if grey >= 128 else (0,) * 3, "CMYK": colour}[mode]
    im = im.convert(mode) if mode != "P" else im.quantize(4)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    return buf.getvalue(), expected


def _case(rng, kind):
    """(file name, bytes, the RGB it reads as or None if it must be refused, where: 'image' | 'label')."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    size = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
    if kind == "mode":
        mode = str(rng.choice(["L", "LA", "P", "RGBA", "1", "RGB"]))
        data, expected = _encoded(colour, mode, "PNG", size)
        return "odd.png", data, expected, "image"
    if kind == "cmyk_jpeg":
        data, expected = _encoded(colour, "CMYK", "JPEG", size)
        return "odd.jpg", data, expected, "image"
    if kind == "jpeg_named_png":
        data, expected = _encoded(colour, "RGB", "JPEG", size)
        return "odd.png", data, expected, "image"
    if kind == "grey16":
        value = int(rng.integers(0, 65536))
        return "odd.png", png_bytes(np.full(size[::-1], value, np.uint16), 0), (round(value / 257),) * 3, "image"
    if kind == "rgb16":
        rgb16 = np.array(colour, np.uint16) * 257
        return "odd.png", png_bytes(np.broadcast_to(rgb16, size[::-1] + (3,)).copy(), 2), colour, "image"
    if kind == "thin":  # extreme aspect ratio: resized and cropped like any other
        data, expected = _encoded(colour, "RGB", "PNG", (int(rng.integers(400, 4000)), 2))
        return "odd.png", data, expected, "image"
    if kind == "truncated":
        fmt = str(rng.choice(["PNG", "JPEG"]))
        data, _ = _encoded(colour, "RGB", fmt, (64, 64))
        cut = int(rng.integers(8, len(data) - 8))
        return f"odd.{'png' if fmt == 'PNG' else 'jpg'}", data[:cut], None, "image"
    if kind == "zero_bytes":
        return str(rng.choice(["odd.png", "odd.jpg", "odd.jpeg"])), b"", None, "image"
    if kind == "text_named_jpg":
        return "odd.jpg", b"not an image at all\n" * int(rng.integers(1, 50)), None, "image"
    if kind == "huge":  # a header of 10^5 x 10^5 pixels: refused before any pixel is decoded
        side = int(rng.integers(60_000, 200_000))
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
        return "odd.png", b"\x89PNG\r\n\x1a\n" + chunk + png_bytes(np.zeros((1, 1), np.uint8), 0)[33:], None, \
            "image"
    if kind == "float_tiff":
        buf = io.BytesIO()
        Image.fromarray(np.full(size[::-1], 0.5, np.float32)).save(buf, format="TIFF")
        return "odd.png", buf.getvalue(), None, "image"
    if kind == "label_rgb":
        buf = io.BytesIO()
        Image.new("RGB", size, colour).save(buf, format="PNG")
        return "odd.png", buf.getvalue(), None, "label"
    if kind == "label_16bit":
        return "odd.png", png_bytes(np.ones(size[::-1], np.uint16), 0), None, "label"
    if kind == "label_truncated":
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 3, size[::-1]).astype(np.uint8)).save(buf, format="PNG")
        return "odd.png", buf.getvalue()[:-20], None, "label"
    raise ValueError(kind)


KINDS = ("mode", "cmyk_jpeg", "jpeg_named_png", "grey16", "rgb16", "thin", "truncated", "zero_bytes",
         "text_named_jpg", "huge", "float_tiff", "label_rgb", "label_16bit", "label_truncated")
CASES = [(i, KINDS[i % len(KINDS)]) for i in range(2 * len(KINDS))]  # every kind twice, drawn differently


@pytest.mark.parametrize("index, kind", CASES)
def test_a_malformed_or_unusual_file_is_read_right_or_refused_by_name(params, tmp_path, capsys, index, kind):
    rng = np.random.default_rng(1000 + index)
    name, data, expected, where = _case(rng, kind)
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    sizes = {}
    for i in range(3):  # ordinary images around the odd one
        w, h = (int(v) for v in rng.integers(8, 40, 2))
        Image.new("RGB", (w, h), (10, 20, 30)).save(root / "images" / f"good{i}.png")
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "labels" / f"good{i}.png")
    target = root / ("images" if where == "image" else "labels") / name
    target.write_bytes(data)
    if where == "label":  # its image is fine
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "images" / "odd.png")
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:
                sizes = im.size
        except Exception:
            sizes = (8, 8)
        Image.fromarray(np.zeros(sizes[::-1], np.uint8)).save(root / "labels" / "odd.png")
    (root / "classes.txt").write_text("a\nb\nc\n")
    _, ppath = params(**{"data.name": "folder", "data.root": str(root), "data.res": RES, "runtime.workers": 1,
                         "data.val_fraction": 0.5})
    out_dir = tmp_path / "out"
    out, metrics = out_dir / "prepared", out_dir / "prepare.json"
    if expected is None:
        with pytest.raises(SystemExit) as e:
            prepare_stage.main(out=str(out), metrics=str(metrics), params=str(ppath))
        err = capsys.readouterr().err
        assert e.value.code == 1 and "Traceback" not in err
        # progress bars share the terminal line (\r, cursor-up escapes): the message is what follows "error: "
        line = [x[x.index("error: "):] for x in re.split(r"[\r\n]", err) if "error: " in x]
        assert len(line) == 1 and str(target) in line[0], (kind, err)
        assert not out.exists() and not metrics.exists()
        assert not out_dir.exists() or not list(out_dir.glob(".*")), "temporary output left behind"
    else:
        prepare_stage.main(out=str(out), metrics=str(metrics), params=str(ppath))
        meta = json.loads((out / "meta.json").read_text())
        split = "train" if name in meta["names"]["train"] else "val"
        image = Prepared(out).images(split)[meta["names"][split].index(name)]
        tolerance = 6 if name.endswith(".jpg") or "JPEG" in kind.upper() else 1
        assert np.abs(image.astype(int) - np.array(expected)).max() <= tolerance, (kind, expected,
                                                                                  image.reshape(-1, 3)[0])
        assert not list(out_dir.glob(".*"))
