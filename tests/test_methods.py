"""The method registry: one row and one module per method, asked by name; nothing else dispatches on the name."""
import ast
from types import SimpleNamespace

import pytest
import torch

from lib import methods
from lib.checkpoint import load_model, save_model
from lib.clustering import argmax_classifier, classifier_scores, prototype_classifier
from lib.config import CLASSIFIERS, as_dict
from lib.scoring import Scorer, log_probabilities, score_kind
from tests.conftest import ROOT

TINY = {"data.res": 32, "model.dim": 8, "model.weights": "", "model.levels": 2, "infoseg.dim": 16,
        "infoseg.width": 8, "iic.k_over": 5}


@pytest.mark.parametrize("name", methods.NAMES)
def test_each_method_module_declares_what_the_registry_asks(params, tmp_path, name):
    method, row = methods.get(name), methods.spec(name)
    assert isinstance(row.label, str) and row.label and row.classifier in CLASSIFIERS
    p, _ = params(method=name, **TINY)
    assert p.model.classifier == row.classifier  # auto is the row's
    lines = method.describe(as_dict(p))
    assert lines and all(line.startswith("- ") for line in lines)
    assert row.trains == hasattr(method, "train_one_epoch")  # the row says what the module does
    assert methods.epochs(p) == (p.train.epochs if row.trains else 0)
    # the network it trains survives its model file: same arch, same outputs
    torch.manual_seed(0)
    net = methods.build(p).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out, emb = net(x), net.embed(x)
    assert out.shape == (2, net.out_channels, 8, 8) and emb.shape == (2, net.dim, 8, 8)
    assert net.out_channels == (p.cluster.k if row.classifier == "argmax" else p.model.dim)
    save_model(net, tmp_path / "m.pt", as_dict(p))
    again, saved = load_model(tmp_path / "m.pt")
    assert saved["method"] == name and type(again) is type(net)
    with torch.no_grad():
        assert torch.equal(again(x), out) and torch.equal(again.embed(x), emb)
    # what its network gives is what its row says: lib/scoring turns it into the CRF's unaries by that
    if row.outputs == "probabilities":
        assert (out >= 0).all() and torch.allclose(out.sum(1), torch.ones(2, 8, 8), atol=1e-5)
    elif row.outputs == "cosines":
        assert out.abs().max() <= 1 + 1e-5
    kind = score_kind(p.model.classifier, row.outputs)
    clf = argmax_classifier(net.out_channels) if row.classifier == "argmax" else \
        prototype_classifier(torch.randn(3, net.out_channels))
    unaries = log_probabilities(classifier_scores(out, clf), kind)
    assert torch.allclose(unaries.exp().sum(1), torch.ones(2, 8, 8), atol=1e-4)
    # and scored with flip averaging and the CRF as every method is: a label per pixel of each image
    e = SimpleNamespace(**{**vars(p.eval), "flip": True, "crf": True})
    images = (x.permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()
    labels = Scorer(clf, kind, e, net).labels(out, images)
    assert all(lab.shape == (32, 32) and lab.max() < len(clf) for lab in labels)


def test_an_unknown_method_or_network_kind_is_refused(tmp_path):
    from lib.errors import ParamsError, WeightsError

    with pytest.raises(ParamsError, match="'method' is 'hp'; expected one of picie, mdc, iic, infoseg, notrain, stego"):
        methods.get("hp")
    torch.save({"state_dict": {}, "arch": '{"kind": "assign"}', "params": "{}"}, tmp_path / "old.pt")
    with pytest.raises(WeightsError, match="not a model file of this version of the code"):
        load_model(tmp_path / "old.pt")


def test_labels_name_the_classifier_only_when_it_is_not_the_methods_own():
    assert methods.label("picie") == "PiCIE" and methods.label("picie", "prototype") == "PiCIE"
    assert methods.label("notrain", "linear") == "No Train / linear"
    assert methods.label("mdc", "auto") == "Modified DeepCluster"


# string literals equal to a method's name that are not a method: Cityscapes' `data.split: picie`, the paper's split
NOT_A_METHOD = {"lib/config.py": {"picie"}, "lib/data/cityscapes.py": {"picie"}}


def test_no_code_outside_a_methods_module_and_the_registry_names_a_method():
    """Config validation, the report, the stages and the bench tables ask the registry; a `== "iic"`
    anywhere else is a dispatch on the name that adding a method would have to find."""
    found = []
    for path in sorted((ROOT / "lib").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("lib/methods/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in methods.NAMES \
                    and node.value not in NOT_A_METHOD.get(rel, ()):
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, found


def _head_steps(params, mode, epoch):
    """Which of an IIC network's heads (main, over-clustering) one epoch of training moves."""
    p, _ = params(method="iic", **{**TINY, "iic.heads": mode, "train.batch_size": 2, "cluster.k": 3})
    torch.manual_seed(0)
    model = methods.build(p)
    before = [[q.detach().clone() for q in h.parameters()] for h in model.heads.heads]
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8).numpy()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    stats, _ = methods.train_one_epoch(model, images, optimizer, p, torch.Generator().manual_seed(0),
                                       torch.device("cpu"), epoch)
    assert {"mi", "mi_over"} <= set(stats)  # both heads' MI logged whichever is trained
    return [any(not torch.equal(a, q) for a, q in zip(old, h.parameters()))
            for old, h in zip(before, model.heads.heads)]


def test_iic_heads_alternate_as_iic_one_over_clustering_epoch_then_two_main_ones(params):
    assert _head_steps(params, "sum", 0) == [True, True]
    assert [_head_steps(params, "alternate", e) for e in range(4)] == [
        [False, True], [True, False], [True, False], [False, True]]
