"""The study's tables, as markdown: the claims and controlled experiments (reports/fidelity.md), the
methods and ablations (methods.md, ablations.md), the defaults on other data (outside.md), the means
over seeds (seeds.md); each says how it was made. write_tables writes them and the study's figure."""
from pathlib import Path

from lib import methods
from lib.io import atomic_path
from lib.study.design import (CONFIGS, DEFAULT, EXPERIMENTS, METHOD_ROWS, METHODS_TABLE, PROBE, REPORTING, SCORES,
                              TUNING)
from lib.study.figures import plot_claims
from lib.study.records import by_config
from lib.study.stats import aggregate, claim_rows, signed as _f
from lib.study.tuning import tuning_markdown


CLAIMS_HEADER = ("| table | claim (better vs worse) | metric | paper | ours: mean [95 % CI] | n | reproduces |",
                 "|---|---|---|---|---|---|---|")


def _interval(r):
    return f"{_f(r['mean'])} [{_f(r['low'])}, {_f(r['high'])}]"


def _claim_line(r):
    ours = _interval(r)
    return (f"| {r['table']} | {r['claim']} (`{r['better']}` vs `{r['worse']}`) | {r['metric']} | "
            f"{_f(r['paper'])} | {ours} | {_n(r)} | {r['verdict']} |")


def _n(r):
    k = r.get("one_network")
    return r["n"] if k is None else f"{r['n']} ({k} of one network)"


def backbone_line(base):
    """The network every run starts from: params.yaml's (no configuration of the study names another), and
    what each of the study's methods does with it, worded from its row in lib/methods so that a method
    added to the study is described by its own rule."""
    if "model.backbone" not in (base or {}):
        return ""
    weights = f"its `{base['model.weights']}` weights" if base.get("model.weights") else "random initialisation"
    named = {kv.split("=", 1)[1] for settings in CONFIGS.values() for kv in settings if kv.startswith("method=")}
    roles = {}
    for name in (n for n in methods.NAMES if n in named | {base.get("method")}):
        m = methods.spec(name)
        role = ("replaced by a network of its own" if m.stride else "clustered as it is" if not m.trains else
                "kept frozen under a trained head" if m.frozen or base.get("model.freeze") else "trained")
        roles.setdefault(role, []).append(m.label)
    said = "; ".join(f"{role} by {_and(labels)}" for role, labels in roles.items())
    return f"Every run's backbone: `{base['model.backbone']}` from {weights}: {said}."


def _and(words):
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


FIGURES = {"fidelity.md": "study/fidelity.png", "outside.md": "study/outside.png"}  # beside the tables


def _figure_line(name):
    return f"![each claim's paired difference and interval against 0 and the paper's]({FIGURES[name]})"


def fidelity_markdown(runs, data_seed, results_path, digests, base=None):
    rows = claim_rows(runs, data_seed, digests)
    runs = [r for r in runs if r["data_seed"] == data_seed and r["digest"] in set(digests.values())]
    commits = sorted({r["commit"] for r in runs})
    done = sum(r["n"] >= 2 for r in rows)
    lines = ["# Does it show the paper's effects? (PiCIE Tables 1, 5, 6, 7)", "",
             f"Paired differences (better minus worse, the same seed and data; `data.seed: {data_seed}`), mean "
             f"and 95 % Student-t interval over the seeds both configurations finished; a claim reproduces when "
             f"the interval excludes 0 in the paper's direction; one that spans 0 is smaller than the paper's effect "
             f"when it also excludes that, and undecided (too few seeds) when it holds it. Runs: `{results_path}` "
             f"({len(runs)} with these params on this data, commits {', '.join(commits) or '-'}); "
             f"made by `python -m stages.study`. {done} of {len(rows)} rows have 2 or more paired seeds. "
             f"Where the two configurations differ only in scoring (`eval.*`), n also says how many pairs scored "
             f"one network (the same training loss and probe scores; a base run trained on another machine is "
             f"another network). "
             f"{backbone_line(base)}", "", _figure_line("fidelity.md"), "", *CLAIMS_HEADER]
    lines += [_claim_line(r) for r in rows]
    lines += ["", "## Controlled experiments: what in this data decides a claim", "",
              "Where a claim (or one of the paper's numbers) does not reproduce here, a pair of configurations "
              "that changes one thing the claim may depend on, paired by seed on the same variant; `yes`: the "
              "interval excludes 0 in the direction stated.", "",
              "| table | experiment (better vs worse) | why | metric | ours: mean [95 % CI] | n | shown |",
              "|---|---|---|---|---|---|---|"]
    why, shown = {e[1]: e[5] for e in EXPERIMENTS}, set()
    for r in claim_rows(runs, data_seed, digests, [(*e[:5], None) for e in EXPERIMENTS]):
        first = r["claim"] not in shown  # the experiment and its reason once, on its first metric's row
        shown.add(r["claim"])
        name = f"{r['claim']} (`{r['better']}` vs `{r['worse']}`)" if first else ""
        lines.append(f"| {r['table'] if first else ''} | {name} | {why[r['claim']] if first else ''} | "
                     f"{r['metric']} | {_interval(r)} | {r['n']} | "
                     f"{r['verdict']} |")
    return "\n".join(lines) + "\n"


def outside_markdown(runs, data_seed, results_path, digests, data, method_rows, base=None):
    """The defaults on another dataset (`data`: the -S settings that select it, the same for every
    configuration): the claims with at least one paired seed, and the methods' table."""
    rows = [r for r in claim_rows(runs, data_seed, digests) if r["n"] >= 1]
    lines = ["# The defaults on data outside the repository", "",
             f"Every configuration with `{data}` on top of params.yaml (`data.seed: {data_seed}`: the folder's "
             f"train / validation split); the defaults were chosen on the embedded set's tuning variant and "
             f"not changed for these runs. Paired differences as in fidelity.md. Runs: `{results_path}`; made by "
             f"`python -m stages.study --data \"{data}\" --only ...`. {backbone_line(base)}", "",
             _figure_line("outside.md"), "", *CLAIMS_HEADER]
    lines += [_claim_line(r) for r in rows]
    table = configs_table(runs, data_seed, digests, method_rows, SCORES + PROBE)
    return "\n".join(lines + ["", "Mean ± sample std over seeds:", ""] + table) + "\n"


def configs_markdown(runs, data_seed, digests, configs, title, keys):
    """Mean +- sample std per configuration (the methods and ablations tables, from the same runs)."""
    lines = [f"# {title}", "", f"Mean ± sample std over seeds (`data.seed: {data_seed}`); the study's runs.", ""]
    return "\n".join(lines + configs_table(runs, data_seed, digests, configs, keys)) + "\n"


def configs_table(runs, data_seed, digests, configs, keys):
    table = by_config(runs, data_seed, digests)
    lines = ["| method | settings | " + " | ".join(keys) + " | seeds |", "|---" * (len(keys) + 3) + "|"]
    for config in configs:
        if config not in table:
            continue
        got = aggregate([r["metrics"] for r in table[config].values()])
        cells = [f"{got[k][0]:.2f} ± {got[k][1]:.2f}" if k in got else "n/a" for k in keys]
        method = next(r["method"] for r in table[config].values())
        settings = " ".join(f"`{kv}`" for kv in config.split()) if config != DEFAULT else "params.yaml"
        lines.append(f"| {methods.label(method)} | {settings} | {' | '.join(cells)} | {len(table[config])} |")
    return lines


def seeds_markdown(summary, seeds, overrides=()):
    lines = ["# Mean +- std over seeds", "",
             f"Seeds {', '.join(map(str, seeds))}" + (f"; params set: {', '.join(overrides)}" if overrides else "")
             + ". Sample standard deviation (n - 1).", "",
             "| metric | mean +- std | runs |", "|---|---|---|"]
    for key, (m, s, n) in summary.items():
        lines.append(f"| {key} | {m:.2f} +- {s:.2f} | {n} |")
    return "\n".join(lines) + "\n"


def write_tables(runs, digests, base, results, out_dir="reports", data="", data_seed=REPORTING):
    """The embedded set's tables and their figure, or with `data` (other data's -S settings) outside.md and
    its figure alone; digests: {config: digest} of the configurations' params (the data's settings
    included). Returns {figure path: what it drew (lib/study/figures.forest_rows)}."""
    name = "outside.md" if data else "fidelity.md"
    figure = Path(out_dir) / FIGURES[name]
    figure.parent.mkdir(parents=True, exist_ok=True)
    title = f"The claims on {'`' + data + '`' if data else 'the embedded data'} (reports/{name})"
    drawn = {figure: plot_claims(claim_rows(runs, data_seed if data else REPORTING, digests), figure, title)}
    if data:
        texts = {"outside.md": outside_markdown(runs, data_seed, results, digests, data, METHOD_ROWS, base)}
    else:
        texts = {"fidelity.md": fidelity_markdown(runs, REPORTING, results, digests, base),
                 # scores only: the runs' wall times come from machines shared with other work (a bench's job)
                 "methods.md": configs_markdown(runs, REPORTING, digests, METHODS_TABLE,
                                                "Methods compared on the embedded dataset", SCORES + PROBE),
                 "ablations.md": configs_markdown(runs, REPORTING, digests,
                                                  [c for c in CONFIGS if c not in METHODS_TABLE[1:]],
                                                  "PiCIE's ablations on the embedded dataset", SCORES + PROBE),
                 "tuning.md": tuning_markdown(runs, TUNING, base)}
    for name, text in texts.items():
        with atomic_path(Path(out_dir) / name) as tmp:
            tmp.write_text(text)
    return drawn
