"""Model files and resumable training state, read back with weights_only=True."""
import hashlib
import json
import pickle
from pathlib import Path

import torch

from lib.io import atomic_path
from lib.models import build_from_arch
from lib.errors import WeightsError

TRAIN_KEYS = ("seed", "data", "model", "aug", "loss", "cluster", "train")


def config_hash(params_dict):
    """Hash of everything training depends on: a checkpoint resumes only into the same run."""
    sub = {k: params_dict[k] for k in TRAIN_KEYS}
    return hashlib.sha256(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]


def code_digest():
    """Hash of the training code (lib/ and stages/train.py): an interrupted run of other code
    is not resumed, since DVC re-runs training exactly when that code changes."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.md5()
    for f in sorted((root / "lib").rglob("*.py")) + [root / "stages" / "train.py"]:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_model(model, path, params_dict):
    save({"state_dict": model.state_dict(), "arch": json.dumps(model.arch()), "params": json.dumps(params_dict)},
         path)


def load_model(path, device="cpu"):
    """Rebuild a trained network from its file (no ImageNet weights are re-read)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = build_from_arch(json.loads(ckpt["arch"]))
        model.load_state_dict(ckpt["state_dict"])
    except FileNotFoundError:
        raise WeightsError(f"{path}: model file not found; run the train stage first") from None
    except (RuntimeError, KeyError, pickle.UnpicklingError) as e:
        raise WeightsError(f"{path}: not a model file of this version of the code ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), json.loads(ckpt["params"])


def file_digest(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
