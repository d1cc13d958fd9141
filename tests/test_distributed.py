"""Training on 2 gloo processes (CPU) computes what one process computes on the same global batch.

A network without batch-norm (whose statistics are per process on CPU, where
torch has no SyncBatchNorm) makes the comparison exact up to float rounding:
the clustering pass's gathered sample and centroids, every method's losses,
and the weights after an epoch of DDP-averaged gradients.
"""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from lib import methods
from lib.config import load_params
from lib.data.textures import make_split
from lib.deepcluster import cluster_pass
from lib.methods.iic import AssignmentNet
from lib.methods.infoseg import infoseg_loss
from stages import prepare as prepare_stage
from tests.conftest import ROOT, tiny_params

TINY = {"data.res": 32, "model.dim": 8, "model.weights": "", "train.batch_size": 8, "cluster.images": 12,
        "cluster.max_points": 600, "cluster.niter": 5, "cluster.bn": "eval", "iic.k_over": 5}
RUNS = {"picie": {}, "mdc": {"cluster.head_fit": 3}, "iic": {"iic.heads": "alternate"}}


class NoNormNet(nn.Module):
    """A feature network without batch-norm: (B, 3, H, W) -> (B, dim, H/4, W/4)."""

    def __init__(self, dim=8):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, dim, 3, 2, 1)
        self.dim, self.in_chans, self.backbone_name, self.stride = dim, 3, "nonorm", 4

    def forward(self, x, normalize=True):
        z = 10 * self.b(F.relu(self.a(x)))  # IIC's heads read it raw: large enough to leave the uniform saddle
        return F.normalize(z, dim=1) if normalize else z


def _run(folder):
    """Each method's clustering pass (where it has one) and one training epoch, from seed 0."""
    images = make_split(16, 32, 0)[0]  # 16 images: 2 batches of 8, and a clustering batch of 4 (uneven shards)
    out = {}
    for name, extra in RUNS.items():
        p = load_params(os.path.join(folder, f"{name}.yaml"))
        torch.manual_seed(0)
        model = NoNormNet() if name != "iic" else AssignmentNet(NoNormNet(), p.cluster.k, p.iic.k_over)
        g = torch.Generator().manual_seed(0)
        if name != "iic":
            levels, _ = cluster_pass(model, images, p, g, torch.device("cpu"), 0, views=1 if name == "mdc" else 2)
            out[f"{name}.centroids"] = torch.stack(levels[0].centroids)
            out[f"{name}.weights"] = torch.stack(levels[0].weights)
        # SGD: its step is proportional to the gradient (Adam's normalised step turns the rounding noise of
        # IIC's near-zero gradients into full-size steps of either sign)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        before = torch.cat([q.detach().flatten() for q in model.parameters()])
        for epoch in range(2):  # IIC's alternate heads: the over-clustering head, then the main one
            stats, _ = methods.get(name).train_one_epoch(model, images, opt, p, g, torch.device("cpu"), epoch)
            out[f"{name}.loss{epoch}"] = torch.tensor(stats["loss"])
        out[f"{name}.update"] = torch.cat([q.detach().flatten() for q in model.parameters()]) - before
    # InfoSeg's loss: every image of the batch is a negative of the others, across processes
    torch.manual_seed(1)
    local, glob = torch.randn(6, 4, 3, 3, requires_grad=True), torch.randn(6, 5, 4, requires_grad=True)
    rows = slice(None) if not dist.is_initialized() else slice(3 * dist.get_rank(), 3 * dist.get_rank() + 3)
    loss, _ = infoseg_loss(local[rows], glob[rows], tau=0.8)
    loss.backward()
    grad = torch.cat([local.grad.flatten(), glob.grad.flatten()])
    if dist.is_initialized():  # DDP would average the processes' gradients
        dist.all_reduce(grad)
        grad /= dist.get_world_size()
        loss = loss.detach().clone()
        dist.all_reduce(loss)
        loss /= dist.get_world_size()
    out["infoseg.loss"], out["infoseg.grad"] = loss.detach(), grad
    return out


def _worker(rank, world, folder):
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        out = _run(folder)
        if rank == 0:
            torch.save(out, os.path.join(folder, "two.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_compute_what_one_process_computes(tmp_path):
    for name, extra in RUNS.items():
        _, path = tiny_params(tmp_path, method=name, **TINY, **extra)
        path.rename(tmp_path / f"{name}.yaml")
    torch.set_num_threads(1)
    one = _run(str(tmp_path))
    torch.set_num_threads(2)
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert one.keys() == two.keys()
    for key in one:  # relative to the size of what is compared: IIC's MI and its gradients are ~1e-4
        error = (one[key] - two[key]).norm() / one[key].norm()
        assert error < 2e-3, (key, float(error), one[key], two[key])
    # and the comparison can fail: training moved the weights, and the losses are not trivial
    for m in RUNS:
        assert float(one[f"{m}.update"].norm()) > 1e-4 and math.isfinite(float(one[f"{m}.loss1"]))


STAGE = {"data.train_size": 32, "data.val_size": 4, "data.res": 32, "model.dim": 8, "model.weights": "",
         "train.batch_size": 16, "train.epochs": 2, "cluster.images": 32, "cluster.max_points": 2000,
         "cluster.niter": 5, "cluster.bn": "eval", "curves.images": 8, "runtime.threads": 1}


def _stage(folder, prepared, **overrides):
    """The train stage's command on a tiny prepared set, as dvc.yaml runs it; returns its Popen."""
    _, path = tiny_params(folder, **{**STAGE, **overrides})
    folder = Path(folder)
    cmd = [sys.executable, "-m", "stages.train", "--data", str(prepared), "--out", str(folder / "model.pt"),
           "--metrics", str(folder / "train.json"), "--live-dir", str(folder / "live"),
           "--epoch-times", str(folder / "times.tsv"), "--checkpoint", str(folder / "ckpt.pt"),
           "--neighbours", str(folder / "knn.npy"), "--frozen-features", str(folder / "frozen.h5"),
           "--params", str(path)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _prepared(tmp_path):
    _, path = tiny_params(tmp_path, **STAGE)
    prepare_stage.main(out=str(tmp_path / "prepared"), metrics=str(tmp_path / "prep.json"), params=str(path))
    return tmp_path / "prepared"


@pytest.mark.slow
def test_the_train_stage_with_two_processes_writes_once_and_trains_as_one_process(tmp_path):
    prepared = _prepared(tmp_path)
    runs = {}
    for n in (1, 2):
        (tmp_path / f"n{n}").mkdir()
        out, err = _stage(tmp_path / f"n{n}", prepared, **{"train.nproc": n}).communicate(timeout=300)
        assert "epoch 2/2" in out, err[-3000:]
        runs[n] = (out, json.loads((tmp_path / f"n{n}" / "train.json").read_text()))
    out, metrics = runs[2]
    # one process speaks and writes: one config, one line per epoch, the outputs, no checkpoint left
    assert out.count("config:") == 1 and out.count("epoch 1/2") == 1 and out.count("saved ") == 1
    assert "in each of 2 processes" in out and metrics["processes"] == 2
    assert sorted(q.name for q in (tmp_path / "n2").iterdir()) == ["live", "model.pt", "params.yaml", "times.tsv",
                                                                   "train.json"]
    # epoch 0's clustering is one process's: the same gathered sample and centroids (cluster.bn: eval, so
    # the features of an image do not depend on the others of its batch), hence the same k-means inertia
    inertia = {n: [float(line.split("\t")[-1]) for line in (tmp_path / f"n{n}" / "live" / "plots" / "metrics" / "train"
                                                             / "kmeans_inertia.tsv").read_text().splitlines()[1:]]
               for n in (1, 2)}
    assert math.isclose(inertia[1][0], inertia[2][0], rel_tol=1e-5), inertia
    assert not math.isclose(inertia[1][1], inertia[1][0], rel_tol=1e-3)  # a number that training moves
    # the same optimisation but for batch-norm's statistics, which each process takes over its own 8 images
    # on CPU (torch has no CPU SyncBatchNorm): the final loss within 10 % of one process's
    one = runs[1][1]["final_loss"]
    assert abs(metrics["final_loss"] - one) < 0.1 * abs(one), (metrics["final_loss"], one)


def _children(pid):
    """The processes whose parent is pid, with their environment's RANK."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                env = (stat.parent / "environ").read_bytes().split(b"\0")
                rank = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"RANK=")]
                found[int(stat.parent.name)] = rank[0] if rank else None
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.slow
def test_a_killed_process_stops_the_run_with_a_message_and_the_next_run_resumes(tmp_path):
    prepared = _prepared(tmp_path)
    run = _stage(tmp_path, prepared, **{"train.nproc": 2, "train.epochs": 30})
    ckpt = tmp_path / "ckpt.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline:  # the first epoch is finished and saved
        time.sleep(0.2)
    assert ckpt.exists(), run.communicate()[1][-3000:]
    workers = {rank: pid for pid, rank in _children(run.pid).items()}
    assert set(workers) == {"0", "1"}, workers
    os.kill(workers["1"], signal.SIGKILL)
    t = time.time()
    # the launcher stops the other process (within seconds on an idle machine); without it, process 0 would
    # wait at its next collective for runtime.timeout (600 s) and end with a timeout. Half of that tells the
    # two apart on a loaded machine too; how fast the launcher is on this one is not this test's question.
    timeout = load_params(tmp_path / "params.yaml").runtime.timeout
    out, err = run.communicate(timeout=timeout)
    assert run.returncode == 1 and time.time() - t < timeout / 2, time.time() - t
    assert "error: training process 1 of 2 failed (exit code -9); the others were stopped" in err, err[-3000:]
    assert "`dvc repro` resumes from the last finished epoch" in err
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < 30
    out, err = _stage(tmp_path, prepared, **{"train.nproc": 2, "train.epochs": 30}).communicate(timeout=300)
    assert f"resuming from {ckpt} after epoch {done}" in out and "epoch 30/30" in out, err[-3000:]
    assert f"epoch {done}/30" not in out and (tmp_path / "model.pt").is_file() and not ckpt.exists()


def _unassigned_port():
    """A free port below the kernel's ephemeral range, which it hands to no socket of its own choosing (the
    outgoing connections and port-0 binds of every other test and program): only a program that names it
    can take it before torchrun binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(low - 1, 1024, -1):
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@pytest.mark.slow
def test_two_torchrun_nodes_on_one_machine_complete_a_run(tmp_path):
    """docs/distributed.md: the command a user runs on each node, here both on
    localhost; the node of rank 0 writes the outputs."""
    prepared = _prepared(tmp_path)
    _, path = tiny_params(tmp_path, **STAGE)
    for attempt in range(3):
        port = _unassigned_port()
        nodes = [subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(i),
             "--nproc-per-node", "1", "--rdzv-endpoint", f"localhost:{port}", "-m", "stages.train",
             "--data", str(prepared), "--out", str(tmp_path / "model.pt"), "--metrics", str(tmp_path / "train.json"),
             "--live-dir", str(tmp_path / "live"), "--epoch-times", str(tmp_path / "times.tsv"),
             "--checkpoint", str(tmp_path / "ckpt.pt"), "--neighbours", str(tmp_path / "knn.npy"),
             "--frozen-features", str(tmp_path / "frozen.h5"), "--params", str(path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
        outs = [node.communicate(timeout=300) for node in nodes]
        if not any("connection to the C10d store has failed" in err for _, err in outs):
            break  # else another program took the port between our check and the nodes' start: another port
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outs]
    assert "epoch 2/2" in outs[0][0] and "saved" in outs[0][0] and "epoch" not in outs[1][0]
    assert json.loads((tmp_path / "train.json").read_text())["processes"] == 2
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / "ckpt.pt").exists()
