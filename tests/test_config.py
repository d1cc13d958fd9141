import pytest
import yaml

from lib.config import ParamsError, apply_settings, load_params
from tests.conftest import ROOT


def test_default_params_resolve_auto_to_the_protocol_and_the_method(params):
    p, _ = params()
    assert (p.method, p.data.name, p.model.backbone, p.cluster.backend) == ("picie", "textures", "efficientnet_lite0",
                                                                            "faiss")
    assert (p.data.res, p.data.train_res, p.cluster.k) == (128, 128, 8)  # the textures protocol
    assert (p.train.lr, p.train.batch_size, p.model.classifier) == (5e-4, 32, "prototype")
    assert isinstance(p.train.lr, float) and isinstance(p.iic.k_over, int) and isinstance(p.infoseg.tau, float)


@pytest.mark.parametrize("method, lr, batch_size, classifier", [
    ("picie", 5e-4, 32, "prototype"), ("mdc", 5e-4, 32, "linear"), ("iic", 5e-4, 32, "argmax"),
    ("infoseg", 1e-4, 64, "argmax"), ("notrain", 5e-4, 32, "prototype"),
])
def test_auto_train_and_classifier_values_come_from_the_method_module(params, method, lr, batch_size, classifier):
    p, _ = params(method=method)
    assert (p.train.lr, p.train.batch_size, p.model.classifier) == (lr, batch_size, classifier)
    p, _ = params(method=method, **{"train.lr": 0.01, "train.batch_size": 4})  # an explicit value wins
    assert (p.train.lr, p.train.batch_size) == (0.01, 4)


@pytest.mark.parametrize("key, value, message", [
    ("train.lr", "fast", "'train.lr' must be a number or 'auto', got 'fast'"),
    ("probe.lr", "fast", "'probe.lr' must be float, got 'fast'"),
    ("method", "hp", "'method' is 'hp'; expected one of picie, mdc, iic, infoseg, notrain, stego"),
    ("train.epochs", 2.5, "'train.epochs' must be an int or 'auto', got 2.5"),
    ("loss.cross", "no", "'loss.cross' must be bool"),
    ("data.name", "imagenet", "'data.name' is 'imagenet'; expected one of textures, folder"),
    ("loss.equivariance", "l2", "'loss.equivariance' is 'l2'; expected one of cluster, mse"),
    ("loss.balance", "inverse", "'loss.balance' is 'inverse'; expected one of true, false, proportional"),
    ("loss.balance", 1, "'loss.balance' is 1; expected one of true, false, proportional"),  # not true
    ("data.res", 102, "'data.res' must be a multiple of the feature stride (4 for efficientnet_lite0), got 102: "
                      "100 or 104"),
    ("data.res", "big", "'data.res' must be an int or 'auto', got 'big'"),
    ("data.train_res", 64, "'data.train_res' (64) must be at least 'data.res' (128)"),
    ("data.train_res", 0, "'data.train_res' must be positive"),
    ("data.split", "stego", "'data.split' is 'stego'; expected one of picie, standard"),
    ("data.stuff_fraction", 75, "'data.stuff_fraction' must be a fraction in [0, 1], got 75"),
    ("cluster.k", 0, "'cluster.k' must be positive"),
    ("train.epochs", -1, "'train.epochs' must be 0 or more, got -1"),
    ("cluster.images", -5, "'cluster.images' must be 0 or more, got -5"),
    ("curves.every", -1, "'curves.every' must be 0 or more, got -1"),
    ("train.epochs", "many", "'train.epochs' must be an int or 'auto', got 'many'"),
    ("cluster.backend", "sklearn", "'cluster.backend' is 'sklearn'; expected one of faiss, torch"),
    ("report.retrieved", 0, "'report.retrieved' must be positive"),
    ("loss.temperature", 0.0, "'loss.temperature' must be positive"),
    ("cluster.restarts", 0, "'cluster.restarts' must be positive"),
    ("aug.hue", 0.7, "'aug.hue' must be in [0, 0.5] turns"),
    ("data.imbalance", 0.5, "'data.imbalance' must be 1 (uniform classes) or more"),
    ("infoseg.dim", 0, "'infoseg.dim' must be positive"),  # the method module's POSITIVE
    ("infoseg.bound", "kl", "'infoseg.bound' is 'kl'; expected one of jsd, dv"),  # the method module's PARAMS
    ("iic.k_over", "many", "'iic.k_over' must be int, got 'many'"),
    ("model.classifier", "argmax", "'model.classifier' is 'argmax' but method 'picie' outputs features"),
])
def test_bad_values_name_the_key(params, key, value, message):
    escaped = message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(ParamsError, match=escaped):
        params(**{key: value})


@pytest.mark.parametrize("name, res, train_res, k", [
    ("textures", 128, 128, 8), ("cocostuff27", 320, 640, 27), ("cocostuff15", 128, 160, 15),
    ("cocostuff3", 128, 160, 3), ("cityscapes27", 320, 640, 27), ("cocopersons", 128, 128, 2),
    ("potsdam", 200, 200, 6), ("potsdam3", 200, 200, 3),
])
def test_auto_takes_the_protocol_of_the_dataset(params, name, res, train_res, k):
    p, _ = params(**{"data.name": name, "data.root": "/data/x"})
    assert (p.data.res, p.data.train_res, p.cluster.k) == (res, train_res, k)
    p, _ = params(**{"data.name": name, "data.root": "/data/x", "data.res": 64, "cluster.k": 5})
    assert (p.data.res, p.data.train_res, p.cluster.k) == (64, round(64 * train_res / res), 5)


@pytest.mark.parametrize("name, lr, epochs, batch_size, images", [
    ("textures", 5e-4, 6, 32, 160), ("cocostuff27", 1e-4, 10, 128, 5120), ("cityscapes27", 1e-3, 10, 128, 5120),
    ("potsdam", 1e-4, 10, 128, 5120),
])
def test_auto_schedule_is_the_protocols_unless_the_method_has_its_own(params, name, lr, epochs, batch_size, images):
    """`-S data.name=cocostuff27 -S data.root=...` alone gives the authors' COCO schedule."""
    root = {} if name == "textures" else {"data.root": "/data/x"}
    p, _ = params(**{"data.name": name, **root})
    assert (p.train.lr, p.train.epochs, p.train.batch_size, p.cluster.images) == (lr, epochs, batch_size, images)
    p, _ = params(method="infoseg", **{"data.name": name, **root})  # InfoSeg's paper: lr 1e-4, batch 64
    assert (p.train.lr, p.train.epochs, p.train.batch_size, p.cluster.images) == (1e-4, epochs, 64, images)
    p, _ = params(**{"data.name": name, **root, "train.epochs": 2, "cluster.images": 0})  # explicit values win
    assert (p.train.epochs, p.cluster.images) == (2, 0)


def test_real_datasets_and_folders_need_a_root_and_rgb_needs_no_training(params):
    for name in ("folder", "cocostuff27", "cityscapes27", "potsdam"):
        with pytest.raises(ParamsError, match=f"'data.root' must name the dataset's folder when data.name is '{name}'"):
            params(**{"data.name": name})
    with pytest.raises(ParamsError, match="'cluster.k: auto' needs /x/classes.txt"):
        params(**{"data.name": "folder", "data.root": "/x"})


def test_auto_k_of_a_folder_counts_its_classes(params, tmp_path):
    (tmp_path / "classes.txt").write_text("sky\ntree\n\ncar\n")
    p, _ = params(**{"data.name": "folder", "data.root": str(tmp_path)})
    assert p.cluster.k == 3
    with pytest.raises(ParamsError, match=r"set 'method' to one that does not train \(notrain\)"):
        params(**{"model.backbone": "rgb"})
    p, _ = params(**{"model.backbone": "rgb", "method": "notrain"})  # raw-RGB k-means
    assert p.model.backbone == "rgb" and p.model.classifier == "prototype"


def test_classifier_auto_is_linear_for_mdc_only(params):
    assert params(method="mdc")[0].model.classifier == "linear"
    assert params(method="picie")[0].model.classifier == "prototype"
    assert params(method="notrain", **{"model.classifier": "linear"})[0].model.classifier == "linear"
    with pytest.raises(ParamsError, match="'model.classifier' is 'knn'; expected one of auto, prototype, linear, argmax"):
        params(**{"model.classifier": "knn"})
    for method in ("iic", "infoseg"):  # networks that output their own assignments are scored by them
        assert params(method=method, **{"model.classifier": "argmax"})[0].model.classifier == "argmax"
        with pytest.raises(ParamsError, match=f"method '{method}' is scored by the argmax of its own assignments"):
            params(method=method, **{"model.classifier": "prototype"})


def test_unknown_key_is_reported(tmp_path):
    from lib.config import load_params
    from tests.conftest import ROOT

    text = (ROOT / "params.yaml").read_text().replace("  cross: true", "  cross: true\n  crosss: true")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match="unknown key 'loss.crosss'"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("old, new", [("train.threads", "runtime.threads"), ("data.workers", "runtime.workers"),
                                      ("loss.scores", "loss.logits")])
def test_a_key_of_an_earlier_version_is_named_with_its_name_today(tmp_path, old, new):
    """A params.yaml (or a `-S` setting) written for an earlier version is told what its key is called now."""
    raw = apply_settings(yaml.safe_load((ROOT / "params.yaml").read_text()), [f"{old}=1"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=f"'{old}' is called '{new}' now"):
        load_params(tmp_path / "params.yaml")


def test_the_inference_batch_follows_the_training_batch_unless_it_is_set(params):
    p, _ = params(**{"train.batch_size": 8})
    assert p.runtime.inference_batch == 8
    p, _ = params(**{"train.batch_size": 8, "runtime.inference_batch": 3})
    assert (p.train.batch_size, p.runtime.inference_batch) == (8, 3)


# Every value of a numeric key that is accepted, of the probes the sweep below tries; any other probe
# must be refused with a message naming the key. A new numeric key that accepts a probe fails the
# sweep until its row here says that value means something.
ACCEPTED = {
    "seed": {0}, "data.seed": {0}, "runtime.workers": {0},  # all cores
    "data.stuff_fraction": {0.0}, "data.person_min_fraction": {0.0}, "aug.hue": {0.0},  # no hue shift
    "loss.temperature": {2.0}, "train.lr": {2.0}, "probe.lr": {2.0}, "retrain.lr": {2.0},
    "cluster.linear_lr": {2.0}, "infoseg.tau": {2.0},
    "cluster.k_over": {0}, "iic.k_over": {0}, "curves.every": {0}, "report.queries": {0},  # off
    "cluster.images": {0},  # every image
    "train.epochs": {0},  # no training
    "iic.displacement": {0},  # the same location in the other view
    "runtime.threads": {0},  # torch's default: all cores
    "cluster.head_fit": {0},  # random heads, as DeepCluster
    "data.imbalance": {2.0},  # the most frequent class of a group twice as likely as the least
    "stego.probe_lr": {2.0},
    # a pair's weight 0 leaves it out; a shift is any correlation (above 1: every pair pushed apart)
    **{f"stego.{pair}_{kind}": {0.0, 2.0} for pair in ("self", "knn", "rand") for kind in ("weight", "shift")},
    # the CRF's stds are any positive size; a kernel's weight 0 leaves it out
    "eval.crf_gaussian_sxy": {2.0}, "eval.crf_bilateral_sxy": {2.0}, "eval.crf_bilateral_srgb": {2.0},
    "eval.crf_gaussian_weight": {0.0, 2.0}, "eval.crf_bilateral_weight": {0.0, 2.0},
}
INT_PROBES, FLOAT_PROBES = (-1, 0, 2.5, "x", True), (-1.0, 0.0, 2.0, "x", "nan", ".inf", False)


def _numeric_keys():
    from lib.config import schema

    for key, spec in schema()[0].items():
        kind = spec[1] if isinstance(spec, tuple) and spec[0] == "auto" else spec
        if kind in (int, float):
            yield key, kind


@pytest.mark.parametrize("key, kind", list(_numeric_keys()))
def test_every_numeric_key_refuses_negative_zero_out_of_range_and_wrong_types_by_name(params, key, kind):
    accepted = set()
    for probe in INT_PROBES if kind is int else FLOAT_PROBES:
        try:
            params(**{key: probe})
        except ParamsError as e:
            assert f"'{key}'" in str(e), (probe, str(e))  # the message names the key the user set
        else:
            accepted.add(probe)
    assert accepted == ACCEPTED.get(key, set())


@pytest.mark.parametrize("text, value", [("1e-4", 1e-4), ("5E-4", 5e-4), ("1.0e-4", 1e-4), (".001", 0.001),
                                         ("1_000.5", 1000.5), ("3", 3.0)])
def test_numbers_are_read_in_every_spelling_a_user_types(tmp_path, text, value):
    """`dvc exp run -S train.lr=1e-4` writes `lr: 1e-4`, which YAML 1.1 (PyYAML) reads as text."""
    text_params = (ROOT / "params.yaml").read_text().replace("  lr: auto", f"  lr: {text}", 1)
    assert f"  lr: {text}" in text_params
    (tmp_path / "params.yaml").write_text(text_params)
    p = load_params(tmp_path / "params.yaml")
    assert p.train.lr == value and isinstance(p.train.lr, float)


def test_one_cluster_is_refused(params):
    with pytest.raises(ParamsError, match=r"'cluster.k' must be at least 2, got 1 \(one cluster segments nothing"):
        params(**{"cluster.k": 1})


def test_settings_are_read_as_dvc_exp_run_s_reads_them():
    raw = {"train": {"lr": "auto", "amp": False}, "model": {"weights": "w.pt"}}
    apply_settings(raw, ["train.lr=0.0001", "train.amp=true", "model.weights=", "loss.balance=proportional",
                         "cluster.k=27", "report.title=a=b"])
    assert raw == {"train": {"lr": 0.0001, "amp": True}, "model": {"weights": ""},
                   "loss": {"balance": "proportional"}, "cluster": {"k": 27}, "report": {"title": "a=b"}}


def test_overclustering_must_exceed_the_clusters(params):
    """+H clusters into K2 > K (the paper: 100 over 27): K2 <= K is no overclustering, most likely a typo."""
    for k_over in (1, 8):
        with pytest.raises(ParamsError, match=rf"'cluster.k_over' must be 0 \(off\) or an overclustering above "
                                              rf"'cluster.k' \(8\), got {k_over}"):
            params(**{"cluster.k_over": k_over})
    assert params(**{"cluster.k_over": 9})[0].cluster.k_over == 9


def test_config_names_no_dataset_and_every_dataset_declares_its_protocol():
    """A dataset is one module and a row of lib/data.DATASETS: config validation asks them."""
    import ast

    from lib import data

    names = set(data.DATASETS)
    constants = {node.value for node in ast.walk(ast.parse((ROOT / "lib/config.py").read_text()))
                 if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not {c for c in constants if c in names or "classes.txt" in c or "cocostuff" in c}
    keys = set(yaml.safe_load((ROOT / "params.yaml").read_text())["data"])
    for name, module in data.DATASETS.items():
        assert isinstance(module.PROTOCOLS[name], data.base.Protocol), name
        assert callable(module.prepare) and (callable(getattr(module, "reads", None))
                                             or isinstance(getattr(module, "READS", None), tuple)), name
        assert set(getattr(module, "PARAMS", {})) <= keys, name  # its own keys are in params.yaml
        assert module.PROTOCOLS[name].k is not None or hasattr(module, "auto_k"), name
    assert {n for module in data.MODULES for n in module.PROTOCOLS} == names  # each name it serves is registered
