"""reports/tuning.md: every configuration run on the tuning variant against the defaults it was run
against: how the defaults were chosen."""
from lib.study.records import settings_name
from lib.study.stats import aggregate, paired_by_seed, signed as _f


TUNED = ("eval.acc", "eval.miou", "probe.acc", "probe.miou")


def _reference(group, groups):
    """The digest of the group a candidate was run against: the `defaults` runs (no settings) of the same
    params.yaml, i.e. whose params equal the candidate's outside the keys its settings set; None for
    a group of defaults runs, or when there is none."""
    run = next(iter(group.values()))
    if not run["settings"]:
        return None
    keys = {kv.split("=", 1)[0] for kv in run["settings"]}
    for d, other in groups.items():
        o = next(iter(other.values()))
        if not o["settings"] and all(o["params"].get(k) == run["params"].get(k)
                                     for k in set(o["params"]) | set(run["params"]) if k not in keys):
            return d
    return None


def tuning_markdown(runs, data_seed, base):
    """Every configuration run on the tuning variant, named by how its params differ from base (today's
    params.yaml), its mean, and its paired difference with the defaults it was run against (the
    `defaults` runs of the same params.yaml): how the defaults were chosen."""
    groups = {}
    for r in runs:  # runs on other data (`--data`) are outside.md's
        if r["data_seed"] == data_seed and all(r["params"].get(k) == base[k] for k in ("data.name", "data.root")):
            groups.setdefault(r["digest"], {})[r["seed"]] = r
    names = {d: settings_name(next(iter(g.values()))["params"], base) for d, g in groups.items()}
    lines = ["# Tuning: candidate settings on the tuning variant", "",
             f"`data.seed: {data_seed}` (the tuning variant; the claims are reported on `data.seed: 0`). Each row "
             f"is one set of params, named by how it differs from today's params.yaml (`key=-`: a param it "
             f"predates); mean over seeds, then the paired difference with the defaults it was run against "
             f"(the params.yaml of its day, named the same way), mean [95 % interval] over the seeds both ran. "
             f"Made by `python -m stages.study --data-seed {data_seed} --only ...`.", "",
             "| settings | seeds | " + " | ".join(TUNED) + " | compared with | "
             + " | ".join(f"Δ {k}" for k in TUNED) + " |", "|---" * (3 + 2 * len(TUNED)) + "|"]
    rows = []
    for d, by_seed in groups.items():
        ref_digest = _reference(by_seed, groups)
        ref = groups.get(ref_digest, {})
        got = aggregate([r["metrics"] for r in by_seed.values()])
        means = [f"{got[k][0]:.2f}" if k in got else "n/a" for k in TUNED]
        deltas = []
        for k in TUNED:
            mean, lo, hi, n = paired_by_seed(by_seed, ref, k)
            deltas.append("-" if n == 0 else f"{_f(mean)} [{_f(lo)}, {_f(hi)}]" if n >= 2 else f"{_f(mean)} (n=1)")
        against = f"`{names[ref_digest]}`" if ref_digest else "-"
        rows.append((ref_digest is not None, names[ref_digest] if ref_digest else names[d], names[d],
                     f"| `{names[d]}` | {len(by_seed)} | {' | '.join(means)} | {against} | {' | '.join(deltas)} |"))
    lines += [row[-1] for row in sorted(rows)]
    return "\n".join(lines) + "\n"
