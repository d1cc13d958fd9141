"""A training run's history: one entry per finished epoch ({"stats": losses, "times": seconds,
"scores": the learning curves' validation scores}), kept in the checkpoint so that a resumed run's
logs equal an uninterrupted one's, and what the train stage writes of it: the dvclive curves, the
table of each epoch's times, the summary metrics."""
from lib.io import atomic_path

TIME_COLUMNS = ("epoch_time_s", "outside_ratio", "curves_s")


def log_epoch(live, entry):
    """One epoch's losses (train/) and validation scores (eval/) as a dvclive step."""
    for name, v in entry["stats"].items():
        live.log_metric(f"train/{name}", v)
    for name, v in entry["scores"].items():
        live.log_metric(f"eval/{name}", v)
    live.next_step()


def write_times(path, history):
    """Each epoch's wall-clock times, one row per epoch (a plot, not cached: they differ run to run)."""
    rows = ["step\t" + "\t".join(TIME_COLUMNS)]
    rows += [f"{i}\t" + "\t".join(f"{h['times'].get(c, 0.0):.3f}" for c in TIME_COLUMNS)
             for i, h in enumerate(history)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")


def epoch_line(epoch, n_epochs, entry):
    """The line printed after an epoch."""
    stats, times, scores = entry["stats"], entry["times"], entry["scores"]
    curve = (f"; validation acc {scores['acc']:.2f} mIoU {scores['miou']:.2f} "
             f"({times['curves_s']:.1f}s)") if scores else ""
    return (f"epoch {epoch + 1}/{n_epochs} loss {stats['loss']:.4f} ({times['epoch_time_s']:.1f}s, "
            f"cluster {times['cluster']:.1f}s, train {times['train']:.1f}s, "
            f"outside/inside {times['outside_ratio']:.2f}){curve}")


def summary(history, n_epochs, threads, processes=1):
    """metrics/train.json: the epochs, the threads (and processes) it ran on, the final loss, the mean epoch
    time and share outside the training passes, and what the learning curves cost against the epochs
    they follow. Flat, for `dvc metrics`."""
    out = {"epochs": n_epochs, "threads": threads}
    if processes > 1:
        out["processes"] = processes
    if history:
        out.update({"final_loss": round(history[-1]["stats"]["loss"], 5),
                    "epoch_time_s": round(sum(h["times"]["epoch_time_s"] for h in history) / len(history), 2),
                    "outside_ratio": round(sum(h["times"]["outside_ratio"] for h in history) / len(history), 4)})
        scored = [h for h in history if h["scores"]]
        if scored:
            out["curves_overhead"] = round(sum(h["times"]["curves_s"] for h in scored)
                                           / sum(h["times"]["epoch_time_s"] for h in scored), 4)
    return out
