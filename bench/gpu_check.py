"""Exercise every CUDA path of the project and print what was verified (not a test: needs a GPU).

    python bench/gpu_check.py            # on a machine with CUDA; `pip install -r requirements-gpu.txt`
    python bench/gpu_check.py cpu        # the same checks on the CPU: a check of this script itself

Checks, each printed as PASS, FAIL or SKIP with its numbers:
1. the network under bfloat16 autocast (train.amp) on CUDA: forward, backward, a finite loss, and
   features within tolerance of float32;
2. k-means on the GPU: faiss (where its build has GPU support) and the torch backend on CUDA tensors,
   each against a CPU run on the same points (inertia within 1 %);
3. a PiCIE epoch on CUDA (clustering pass, snapshot labels, training pass) on tiny data;
4. with 2 or more GPUs: the train stage with train.nproc=2 (NCCL, SyncBatchNorm), against one process;
5. the dense CRF (eval.crf) on the device against the CPU: marginals of a 320 px photo, 27 classes.
Exit status 1 when a check fails.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.clustering import inertia, kmeans  # noqa: E402
from lib.config import load_params  # noqa: E402
from lib.data.textures import make_split  # noqa: E402
from lib.methods import build, train_one_epoch  # noqa: E402
from lib.views import forward_views  # noqa: E402

TINY = {"data": {"train_size": 32, "val_size": 8, "res": 64}, "model": {"dim": 32},
        "train": {"batch_size": 16, "epochs": 2, "threads": 0}, "cluster": {"images": 32, "max_points": 5000},
        "curves": {"images": 8}}
results = []
DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cuda"


def report(name, ok, detail):
    status = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
    results.append(ok)
    print(f"{status}  {name}: {detail}", flush=True)


def params(folder, **extra):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**TINY, **extra}.items():
        raw[section].update(values) if isinstance(values, dict) else raw.__setitem__(section, values)
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path), path


def check_amp(p):
    torch.manual_seed(0)
    net = build(p).to(DEVICE)
    x = torch.rand(8, 3, p.data.res, p.data.res, device=DEVICE)
    z32, _ = forward_views(net, x, None, None, amp=False)
    z16, _ = forward_views(net, x, None, None, amp=True)
    loss = (z16 * torch.randn_like(z16)).sum()
    loss.backward()
    grads = [q.grad for q in net.parameters() if q.requires_grad]
    cos = torch.nn.functional.cosine_similarity(z32, z16, dim=1).mean().item()
    ok = bool(torch.isfinite(loss)) and all(g is not None and torch.isfinite(g).all() for g in grads) and cos > 0.98
    report("bfloat16 autocast", ok, f"loss {loss.item():.3f}, {len(grads)} gradients finite, "
                                    f"mean cosine to float32 features {cos:.4f}")


def check_kmeans():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50000, 128, generator=g) + 3 * torch.randn(27, 128, generator=g).repeat(2000, 1)[:50000]
    cpu = inertia(x, kmeans(x, 27, 20, 0, "torch"))
    for backend in ("faiss", "torch"):
        if backend == "faiss" and DEVICE == "cuda":
            import faiss

            if faiss.get_num_gpus() == 0:
                report("k-means faiss on GPU", None, "this faiss build has no GPU support (requirements-gpu.txt)")
                continue
        mu = kmeans(x.to(DEVICE), 27, 20, 0, backend)
        got = inertia(x, mu.float().cpu())
        report(f"k-means {backend} on {DEVICE}", mu.device.type == DEVICE and abs(got / cpu - 1) < 0.01,
               f"centroids on {mu.device}, inertia {got:.1f} vs CPU {cpu:.1f} ({100 * (got / cpu - 1):+.2f} %)")


def check_epoch(p):
    torch.manual_seed(0)
    images = make_split(p.data.train_size, p.data.train_res, 0)[0]
    model = build(p).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=p.train.lr)
    losses = []
    for epoch in range(2):
        stats, times = train_one_epoch(model, images, opt, p, torch.Generator().manual_seed(0), torch.device(DEVICE),
                                       epoch)
        losses.append(stats["loss"])
    ok = all(torch.isfinite(torch.tensor(losses)))
    report(f"PiCIE epochs on {DEVICE}", ok, f"losses {losses[0]:.4f}, {losses[1]:.4f}; epoch {times['epoch_time_s']:.2f} s "
                                       f"(k-means {times['kmeans']:.2f} s)")


def check_nccl(folder):
    # on the CPU (`cpu`: the script checked on itself) the processes talk over gloo, each normalising by its
    # own rows (torch has no CPU SyncBatchNorm; lib/distributed.sync_batch_norm)
    name = "NCCL, 2 processes" if DEVICE == "cuda" else "gloo, 2 processes"
    bn = "SyncBatchNorm: the same batch statistics" if DEVICE == "cuda" else "batch-norm per process"
    if DEVICE == "cuda" and torch.cuda.device_count() < 2:
        report(name, None, f"{torch.cuda.device_count()} GPU(s)")
        return
    from stages import prepare as prepare_stage

    finals = {}
    for n in (1, 2):
        run = Path(folder) / f"n{n}"
        run.mkdir()
        _, path = params(run, train={**TINY["train"], "nproc": n, "device": DEVICE})
        if n == 1:
            prepare_stage.main(out=str(Path(folder) / "prepared"), metrics=str(run / "prep.json"), params=str(path))
        cmd = [sys.executable, "-m", "stages.train", "--data", str(Path(folder) / "prepared"),
               "--out", str(run / "model.pt"), "--metrics", str(run / "train.json"), "--live-dir", str(run / "live"),
               "--epoch-times", str(run / "t.tsv"), "--checkpoint", str(run / "ckpt.pt"),
               "--neighbours", str(run / "knn.npy"), "--params", str(path)]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            report(name, False, r.stderr.strip().splitlines()[-1])
            return
        finals[n] = json.loads((run / "train.json").read_text())["final_loss"]
    gap = abs(finals[2] / finals[1] - 1)
    report(name, gap < 0.05, f"final loss {finals[2]:.4f} vs one process {finals[1]:.4f} "
                             f"({100 * gap:.2f} % apart; {bn})")


def check_crf():
    import numpy as np
    from skimage import data as skdata

    from lib.crf import dense_crf

    image = np.ascontiguousarray(skdata.astronaut()[:320, :320])
    log_probs = torch.log_softmax(3 * torch.randn(27, 320, 320, generator=torch.Generator().manual_seed(0)), 0)
    on_cpu = dense_crf(image, log_probs)
    on_device = dense_crf(image, log_probs, device=DEVICE).cpu()
    gap = float((on_cpu - on_device).abs().max())
    agree = float((on_cpu.argmax(0) == on_device.argmax(0)).float().mean())
    report(f"dense CRF on {DEVICE}", gap < 1e-2 and agree > 0.999,
           f"marginals within {gap:.1e} of the CPU's, labels equal on {100 * agree:.3f} % of the pixels")


def main():
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (`python bench/gpu_check.py cpu` checks this script on the CPU)")
        sys.exit(1)
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU"
    print(f"{name} x {torch.cuda.device_count() if DEVICE == 'cuda' else 1}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        p, _ = params(folder)
        checks = {"bfloat16 autocast": lambda: check_amp(p), "k-means on GPU": check_kmeans,
                  "PiCIE epochs on CUDA": lambda: check_epoch(p), "NCCL, 2 processes": lambda: check_nccl(folder),
                  "dense CRF": check_crf}
        for name, check in checks.items():
            try:
                check()
            except Exception as e:  # a failed check is reported, and the others still run
                report(name, False, f"{type(e).__name__}: {e}")
    failed = results.count(False)
    print(f"{results.count(True)} passed, {failed} failed, {results.count(None)} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
