"""Figures and the human-readable report: confusion matrix, curves, colour overlays."""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lib import methods  # noqa: E402
from lib.data.base import IGNORE  # noqa: E402
from lib.io import save_figure  # noqa: E402


def palette(n):
    """n distinguishable RGB colours (uint8); ignore (255) is drawn black."""
    base = plt.get_cmap("tab20")(np.linspace(0, 1, 20))[:, :3]
    extra = plt.get_cmap("hsv")(np.linspace(0, 1, max(n - 20, 1), endpoint=False))[:, :3]
    return (np.concatenate([base, extra])[:n] * 255).astype(np.uint8)


def colourise(label_map, colours):
    out = np.zeros(label_map.shape + (3,), dtype=np.uint8)
    valid = label_map != IGNORE
    out[valid] = colours[np.minimum(label_map[valid], len(colours) - 1)]
    return out


def cluster_colours(mapping, class_colours, k):
    """Each cluster gets the colour of its matched class (the paper's Fig. 3), else its own."""
    own = palette(len(class_colours) + k)[len(class_colours):]
    return np.array([class_colours[c] if c >= 0 else own[i] for i, c in enumerate(mapping)], dtype=np.uint8)


def plot_confusion(conf, classes, path):
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * max(len(classes), 4), 1 + 0.45 * max(len(classes), 4)))
    if conf is None:
        ax.text(0.5, 0.5, "no labels: nothing to score", ha="center", va="center")
        ax.axis("off")
    else:
        c = len(classes)
        m = conf[:, :c].astype(np.float64)
        m = m / np.maximum(conf.sum(1, keepdims=True), 1)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for i in range(c):
            for j in range(c):
                if m[i, j] >= 0.01:
                    ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > 0.5 else "black")
        ax.set_xticks(range(c), classes, rotation=90)
        ax.set_yticks(range(c), classes)
        ax.set_xlabel("predicted (cluster matched to class)")
        ax.set_ylabel("ground truth")
        ax.set_title("confusion, % of each ground-truth row")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def read_tsv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    name = Path(path).stem
    return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]


def plot_curves(live_dir, path):
    root = Path(live_dir) / "plots" / "metrics"
    files = sorted(root.glob("train/*.tsv")) + sorted(root.glob("eval/*.tsv"))
    fig, axes = plt.subplots(1, max(len(files), 1), figsize=(3.2 * max(len(files), 1), 2.8))
    axes = np.atleast_1d(axes)
    for ax, f in zip(axes, files):
        steps, values = read_tsv(f)
        ax.plot([s + 1 for s in steps], values, marker="o", ms=3)
        ax.set_title(f"{f.parent.name}/{f.stem}", fontsize=9)
        ax.set_xlabel("epoch")
    if not files:
        axes[0].text(0.5, 0.5, "no training (train.epochs: 0)", ha="center", va="center")
        axes[0].axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_overlays(images, labels, preds, mapping, classes, path, alpha=0.55):
    """Rows of: image | ground truth | prediction | overlay; cluster j is drawn in the colour of
    class mapping[j] (the report passes each cluster's majority class, as the paper's Fig. 3)."""
    n = len(images)
    class_col = palette(max(len(classes), 1))
    k = int(preds.max()) + 1 if mapping is None else len(mapping)
    ccol = cluster_colours(mapping if mapping is not None else np.full(k, -1), class_col, k)
    cols = 4 if labels is not None else 3
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    for i in range(n):
        pred_rgb = colourise(preds[i], ccol)
        panels = [("image", images[i])]
        if labels is not None:
            panels.append(("ground truth", colourise(labels[i], class_col)))
        panels += [("prediction", pred_rgb),
                   ("overlay", (alpha * pred_rgb + (1 - alpha) * images[i]).astype(np.uint8))]
        for ax, (title, im) in zip(axes[i], panels):
            ax.imshow(im)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    if labels is not None and len(classes):
        handles = [plt.Rectangle((0, 0), 1, 1, color=class_col[c] / 255) for c in range(len(classes))]
        fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 8), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()
    save_figure(fig, path, dpi=90)


def fmt(v):
    return "n/a" if v is None else f"{v:.2f}"


def readout_lines(readouts):
    """Tables 7 and 8: the linear probe and supervised re-training, where they ran."""
    probe, retrain = readouts.get("probe", {}), readouts.get("retrain", {})
    if not (probe.get("labelled") or retrain.get("labelled")):
        return []
    lines = ["## What the representation is worth (supervised read-outs, %)", "",
             "| read-out | acc | mIoU |", "|---|---|---|"]
    if probe.get("labelled"):
        lines.append(f"| linear probe on frozen features (Table 7) | {fmt(probe['acc'])} | {fmt(probe['miou'])} |")
    if retrain.get("labelled"):
        lines += [f"| re-trained network, its head (Table 8) | {fmt(retrain['acc'])} | {fmt(retrain['miou'])} |",
                  f"| re-trained network, k-means + matching (C-Acc, C-mIoU) | {fmt(retrain['c_acc'])} | "
                  f"{fmt(retrain['c_miou'])} |"]
    return lines + [""]


def markdown(meta, params, train_metrics, evaluation, figures, readouts=None, retrieval=False, tables=()):
    """The report's text: what was run, what it scored, and where the pictures are."""
    lines = [f"# Unsupervised segmentation report: {meta['name']}", ""]
    method = params["method"]
    lines += [f"- dataset: `{meta['name']}`, {meta['splits'].get('train', 0)} training and "
              f"{meta['splits'].get('val', 0)} validation images at {meta['res']} px, "
              f"{len(meta['classes'])} classes",
              f"- method: `{method}` ({methods.label(method, params['model']['classifier'])})"]
    lines += methods.get(method).describe(params)
    lines += [f"- training: {train_metrics.get('epochs', 0)} epochs, seed {params['seed']}, "
              f"{fmt(train_metrics.get('epoch_time_s'))} s per epoch, time outside the training passes / inside "
              f"{fmt(train_metrics.get('outside_ratio'))}", ""]
    m = evaluation.get("metrics")
    if m:
        k = evaluation["k"]
        ways = {"argmax": "the network's own argmax (its cluster heads)",
                "linear": f"a linear classifier fitted on the k-means labels (K = {k}) of the network's pixel features",
                "prototype": f"k-means (K = {k}) on the network's pixel features, nearest centroid"}
        how = ways[evaluation["classifier"]]
        scored = evaluation.get("protocol", "no flip, no CRF (PiCIE's protocol)")  # eval.flip, eval.crf
        lines += ["## Scores (Hungarian-matched, %)", "", f"Segments: {how}, matched to the classes; scored with "
                  f"{scored}.", "", "| partition | acc | mIoU |", "|---|---|---|",
                  f"| all | {fmt(m['acc'])} | {fmt(m['miou'])} |"]
        for part in ("things", "stuff"):
            if f"{part}_acc" in m:
                lines.append(f"| {part} | {fmt(m[part + '_acc'])} | {fmt(m[part + '_miou'])} |")
        kind = {c: "thing" for c in evaluation.get("things", [])} | {c: "stuff" for c in evaluation.get("stuff", [])}
        lines += ["", "| class | kind | IoU | matched cluster |", "|---|---|---|---|"]
        mapping = evaluation["mapping"]
        for c, name in enumerate(evaluation["classes"]):
            clusters = [str(j) for j, cls in enumerate(mapping) if cls == c]
            lines.append(f"| {name} | {kind.get(c, '-')} | {fmt(m.get('iou_' + name))} | {', '.join(clusters) or '-'} |")
        lines += ["", f"![confusion matrix]({figures['confusion']})", ""]
    else:
        lines += ["No labels: nothing scored. The overlays show the discovered segments.", ""]
    lines += readout_lines(readouts or {})
    for table in tables:  # reports/methods.md, seeds.md, ...: made over many experiments, one heading level down
        lines += ["#" + line if line.startswith("# ") else line for line in table.splitlines()] + [""]
    lines += ["## Training curves", "", f"![training curves]({figures['curves']})", "",
              "## Validation images", "",
              "Each cluster is drawn in the colour of its majority ground-truth class (as the paper's Figure 3)"
              if m else "Each cluster has its own colour.", "",
              f"![overlays]({figures['overlays']})", ""]
    if retrieval:
        lines += ["## Retrieval: the nearest training pixels", "",
                  "For random validation pixels (red box, left), the sampled training pixels whose features are "
                  "nearest (cosine similarity above each); boxes are drawn 4 strides wide (as the paper's Figure 4).",
                  "", f"![retrieval]({figures['retrieval']})", ""]
    return "\n".join(lines)
