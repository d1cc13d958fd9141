import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.config import load_params, set_key  # noqa: E402

torch.set_num_threads(2)


def tiny_params(tmp_path, **overrides):
    """params.yaml of the repo with dotted-key overrides, written to tmp_path and loaded."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in overrides.items():
        set_key(raw, key, value)
    path = Path(tmp_path) / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path), path


@pytest.fixture
def params(tmp_path):
    return lambda **kw: tiny_params(tmp_path, **kw)


def pytest_collection_modifyitems(items):
    """The slow tests first (a stable sort: otherwise in file order). Under `make test`'s 2 processes
    (pytest-xdist) the longest runs then start at once instead of finishing the suite alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
