"""Mean and spread over seeds: the statistics the paper's single runs lack (PiCIE issue 3)."""
import math

# metrics file stem -> its headline keys, in table order
HEADLINE = {
    "eval": ("acc", "miou", "things_acc", "things_miou", "stuff_acc", "stuff_miou"),
    "probe": ("acc", "miou"),
    "retrain": ("acc", "miou", "c_acc", "c_miou"),
    "train": ("epoch_time_s",),
}


def aggregate(runs):
    """runs: one {"eval": {...}, "probe": {...}, ...} per seed -> {"eval.acc": (mean, sample std, n)}.

    The std is the sample standard deviation (n - 1 in the denominator), 0 for one run;
    a metric missing or null in some runs is aggregated over the others.
    """
    out = {}
    for stem, keys in HEADLINE.items():
        for key in keys:
            values = [r[stem][key] for r in runs if isinstance(r.get(stem, {}).get(key), (int, float))]
            if not values:
                continue
            n = len(values)
            mean = sum(values) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
            out[f"{stem}.{key}"] = (mean, std, n)
    return out


def flat(stats):
    """{"eval.acc": (m, s, n)} -> {"eval.acc_mean": m, "eval.acc_std": s, ...}: for metrics files."""
    out = {}
    for key, (m, s, n) in stats.items():
        out[f"{key}_mean"], out[f"{key}_std"], out[f"{key}_n"] = round(m, 4), round(s, 4), n
    return out


def markdown(stats, seeds, overrides=()):
    lines = ["# Mean +- std over seeds", "",
             f"Seeds {', '.join(map(str, seeds))}" + (f"; params set: {', '.join(overrides)}" if overrides else "")
             + ". Sample standard deviation (n - 1).", "",
             "| metric | mean +- std | runs |", "|---|---|---|"]
    for key, (m, s, n) in stats.items():
        lines.append(f"| {key} | {m:.2f} +- {s:.2f} | {n} |")
    return "\n".join(lines) + "\n"
