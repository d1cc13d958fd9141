"""The study's statistics: paired differences over seeds with their 95 % Student-t intervals, the
verdict they give a claim, and means and spreads over seeds."""
import math

from scipy import stats

from lib.study.design import CLAIMS, HEADLINE
from lib.study.records import by_config


def signed(v, d=2):
    """A difference as the tables print it: its sign always, `n/a` where there is none."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{d}f}"


def paired(better, worse):
    """Mean of the paired differences better_i - worse_i, its 95 % Student-t interval and n."""
    d = [b - w for b, w in zip(better, worse)]
    n = len(d)
    if n < 2:
        return (d[0] if d else float("nan")), float("nan"), float("nan"), n
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def _value(run, key):
    stem, name = key.split(".")
    v = run["metrics"].get(stem, {}).get(name)
    return v if isinstance(v, (int, float)) else None


def _paired_seeds(better, worse, key):
    """The seeds where both {seed: run} dicts have metric `key`."""
    return sorted(s for s in set(better) & set(worse)
                  if _value(better[s], key) is not None and _value(worse[s], key) is not None)


def paired_by_seed(better, worse, key):
    """paired() of metric `key` over the seeds where both {seed: run} dicts have it."""
    seeds = _paired_seeds(better, worse, key)
    return paired([_value(better[s], key) for s in seeds], [_value(worse[s], key) for s in seeds])


def verdict(lo, hi, n, paper=None):
    """Whether a claim reproduces (the interval excludes 0 in the paper's direction); for an interval that
    spans 0, also whether it excludes the paper's own effect (smaller here than there) or holds it too
    (these seeds cannot tell the two apart: more seeds, or a less noisy score, would)."""
    if n < 2:
        return "n/a (fewer than 2 paired seeds)"
    if lo > 0:
        return "yes"
    if hi < 0:
        return "no: reversed"
    out = "no: not resolved (interval spans 0)"
    if paper is not None and paper > hi:
        out += f"; smaller than the paper's {paper:+.2f}"
    elif paper is not None:
        out += f"; holds the paper's {paper:+.2f} too: too few seeds to tell"
    return out


def claim_rows(runs, data_seed, digests, claims=CLAIMS):
    """One row per (claim, metric): the paper's difference, ours (mean, 95 % interval, n), the verdict.
    claims: CLAIMS' shape (for EXPERIMENTS, with None for the paper's numbers)."""
    table = by_config(runs, data_seed, digests)
    rows = []
    for paper_table, claim, better, worse, keys, paper in claims:
        b, w = table.get(better, {}), table.get(worse, {})
        for i, key in enumerate(keys):
            mean, lo, hi, n = paired_by_seed(b, w, key)
            effect = None if paper is None else round(paper[0][i] - paper[1][i], 2)
            rows.append({"table": paper_table, "claim": claim, "better": better, "worse": worse, "metric": key,
                         "paper": effect, "mean": mean, "low": lo, "high": hi, "n": n,
                         "verdict": verdict(lo, hi, n, effect), "one_network": one_network(b, w, key)})
    return rows


def _network(run):
    """What only the trained network decides: its training's final loss and the probe's scores (the probe
    trains on its frozen features; its wall time aside)."""
    probe = {k: v for k, v in run["metrics"].get("probe", {}).items() if k != "time_s"}
    return run["metrics"].get("train", {}).get("final_loss"), sorted(probe.items())


def one_network(better, worse, key):
    """For a pair of configurations that differ only in how they score (eval.*): of the seeds paired on
    `key`, how many pairs scored one network (a base run trained on another machine gives another);
    None for any other pair."""
    seeds = _paired_seeds(better, worse, key)
    pairs = [(better[s], worse[s]) for s in seeds]
    if not pairs or any("params" not in r for pair in pairs for r in pair) or any(
            _training_params(b) != _training_params(w) for b, w in pairs):
        return None
    return sum(_network(b) == _network(w) for b, w in pairs)


def _training_params(run):
    return {k: v for k, v in run["params"].items() if not k.startswith("eval.")}


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


def flat(summary):
    """{"eval.acc": (m, s, n)} -> {"eval.acc_mean": m, "eval.acc_std": s, ...}: for metrics files."""
    out = {}
    for key, (m, s, n) in summary.items():
        out[f"{key}_mean"], out[f"{key}_std"], out[f"{key}_n"] = round(m, 4), round(s, 4), n
    return out
