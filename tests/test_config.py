import pytest

from lib.config import ParamsError


def test_default_params_are_valid(params):
    p, _ = params()
    assert p.data.name == "textures" and p.model.backbone == "efficientnet_lite0"


@pytest.mark.parametrize("key, value, message", [
    ("train.lr", "fast", "'train.lr' must be float, got 'fast'"),
    ("train.epochs", 2.5, "'train.epochs' must be int"),
    ("loss.cross", "no", "'loss.cross' must be bool"),
    ("data.name", "imagenet", "'data.name' is 'imagenet'; expected one of textures, folder"),
    ("loss.equivariance", "l2", "'loss.equivariance' is 'l2'; expected one of cluster, mse"),
    ("data.res", 100, "'data.res' must be a multiple of 32"),
    ("cluster.k", 0, "'cluster.k' must be positive"),
])
def test_bad_values_name_the_key(params, key, value, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        params(**{key: value})


def test_folder_needs_a_root_and_rgb_needs_no_training(params):
    with pytest.raises(ParamsError, match="'data.root' must name a folder"):
        params(**{"data.name": "folder"})
    with pytest.raises(ParamsError, match="set 'train.epochs: 0'"):
        params(**{"model.backbone": "rgb"})


def test_unknown_key_is_reported(tmp_path):
    from lib.config import load_params
    from tests.conftest import ROOT

    text = (ROOT / "params.yaml").read_text().replace("  cross: true", "  cross: true\n  crosss: true")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match="unknown key 'loss.crosss'"):
        load_params(tmp_path / "params.yaml")
