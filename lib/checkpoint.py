"""Model files and resumable training state, read back with weights_only=True."""
import hashlib
import json
import pickle
from pathlib import Path

import torch

from lib import methods
from lib.errors import WeightsError
from lib.io import atomic_path
from lib.models import SHARED_KINDS, channels_last, network_from_arch
from lib.pipeline import deps_digest, params_digest, stage_params


def resume_key(params, stage="train", dvc_yaml="dvc.yaml"):
    """What an interrupted run must share with this one to be resumed: the params the stage lists in
    dvc.yaml (their resolved values) and the contents of its deps there (code, and the prepared data by
    name and size), i.e. exactly what DVC re-runs the stage for."""
    return f"{params_digest(stage_params(params, stage, dvc_yaml))}-{deps_digest(stage, dvc_yaml)}"


def resume(path, key, n_epochs, model, optimizer, generator):
    """Continue an interrupted run from its checkpoint at `path` when it is this run's (the same resume
    key) and unfinished: the model's, optimiser's and generator's states are restored in place. Returns
    (the epoch to start from, the finished epochs' history, what was done, in words or None)."""
    path = Path(path)
    if not path.is_file() or n_epochs == 0:
        return 0, [], None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("config") != key or state["epoch"] >= n_epochs:
        return 0, [], (f"not resuming {path}: it is from other params or code than this run (the train stage's "
                       "params and deps in dvc.yaml); starting afresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state["epoch"], json.loads(state["history"]), f"resuming from {path} after epoch {state['epoch']}"


def save_checkpoint(path, key, epoch, model, optimizer, generator, history):
    """The state after `epoch` finished epochs, for `resume`."""
    save({"config": key, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
          "generator": generator.get_state(), "history": json.dumps(history)}, path)


def save(obj, path):
    """Identical objects give identical bytes: torch.save names the zip archive's root folder after a
    file name (here a random temporary one), but "archive" for an open file, so save through one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def build_from_arch(arch):
    """Rebuild a network (random weights) from the `arch()` dict saved with it: a shared feature
    network, or the network of the method its kind names."""
    if arch["kind"] in SHARED_KINDS:
        return network_from_arch(arch)
    if arch["kind"] not in methods.NAMES:
        raise KeyError(f"unknown network kind {arch['kind']!r}")
    return methods.get(arch["kind"]).from_arch(arch)


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
    except (RuntimeError, KeyError, AttributeError, pickle.UnpicklingError) as e:
        raise WeightsError(f"{path}: not a model file of this version of the code ({str(e).splitlines()[0]})") from None
    return channels_last(model).to(device).eval(), json.loads(ckpt["params"])


def file_digest(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
