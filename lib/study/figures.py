"""The study as a forest plot: each claim's paired difference (mean and 95 % interval over seeds) against
0 and against the paper's own difference, one panel per score (accuracy, mIoU), one row per claim and
read-out (the clustering's scores, the linear probe's)."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lib.io import save_figure  # noqa: E402

PANELS = (("acc", "pixel accuracy"), ("miou", "mIoU"))


def forest_rows(rows):
    """The claims' rows (lib/study/stats.claim_rows) with at least one paired seed, as the figure draws
    them: [(label, {score: row})], in the tables' order; a claim's probe rows get a label of their own."""
    out = {}
    for r in rows:
        if r["n"] < 1:
            continue
        stem, score = r["metric"].split(".")
        label = f"[{r['table']}] {r['claim']}" + (" (linear probe)" if stem == "probe" else "")
        out.setdefault(label, {})[score] = r
    return list(out.items())


def plot_claims(rows, path, title):
    """Draw the forest plot of claim rows at path (a PNG); returns what it drew (forest_rows)."""
    drawn = forest_rows(rows)
    n = max(len(drawn), 1)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 1.4 + 0.28 * n), sharey=True, squeeze=False)
    for ax, (score, name) in zip(axes[0], PANELS):
        for y, (_, by_score) in enumerate(drawn):
            r = by_score.get(score)
            if r is None:
                continue
            resolved = r["n"] >= 2 and not math.isnan(r["low"])
            colour = ("tab:green" if r["low"] > 0 else "tab:red" if r["high"] < 0 else "tab:grey") if resolved \
                else "tab:grey"
            if resolved:
                ax.errorbar(r["mean"], y, xerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]], fmt="o",
                            color=colour, ms=4, capsize=2, lw=1)
            else:  # one paired seed: a point, no interval
                ax.plot(r["mean"], y, "o", mfc="none", color=colour, ms=4)
            if r["paper"] is not None:
                ax.plot(r["paper"], y, "x", color="black", ms=6, mew=1.5)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{name}: better minus worse (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(drawn)))
    axes[0][0].set_yticklabels([label for label, _ in drawn], fontsize=7)
    axes[0][0].set_ylim(len(drawn) - 0.5, -0.5)
    fig.suptitle(f"{title}\nmean and 95 % interval over paired seeds (green: above 0, red: below, grey: "
                 "not resolved; hollow: one seed); x: the paper's difference; [the paper's table]", fontsize=9)
    fig.subplots_adjust(left=0.33, right=0.98, top=1 - 0.9 / (1.4 + 0.28 * n), bottom=0.55 / (1.4 + 0.28 * n),
                        wspace=0.08)
    save_figure(fig, path, dpi=110, metadata={"Software": None})
    return drawn
