"""The fidelity study: does this implementation show the PiCIE paper's effects (Tables 1, 5, 6, 7)?

Each claim compares two configurations (params.yaml plus `-S` settings) run
with the same seeds on the same data; the effect is the paired difference
(better minus worse, seed by seed), reported as its mean and a 95 %
Student-t interval. A claim reproduces when the interval excludes 0 in the
paper's direction.

Every finished run is one line of a JSON Lines results file (config,
settings, seed, data seed, the resolved params' digest, commit, metrics),
committed with the project: it, not DVC's local experiment refs, is the
record, so a study can stop and go on later on another machine; runs
already in it are skipped. `python -m stages.study` is the command.
"""
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import yaml
from scipy import stats

from lib import methods
from lib.config import apply_settings, flatten
from lib.seeds import aggregate, dvc, experiment_metrics, metric_files, stems_made_up_to

# A configuration is named by its -S settings on top of params.yaml (whose defaults are PiCIE's)
DEFAULT = "defaults"
NOTRAIN, MDC, IIC = "method=notrain", "method=mdc", "method=iic"
SINGLE = "cluster.single=true"
NO_PHOTOMETRIC = "aug.photometric=false"
IMBALANCED = "data.imbalance=20"  # the embedded data with a long tail of classes (0.5-31 % of the pixels)
ZOOM = "aug.crop_measure=side"  # the authors' crops: 0.5-1 of the side, 0.25-1 of the area (ours: 0.5-1 of it)
ANY_HUE = "aug.hue=0.5"  # photometric jitter that spans the colour circle, as the embedded data's tints do
MDC_FITTED = f"{MDC} cluster.head_fit=3"  # Modified DeepCluster whose fresh heads are fitted before the backbone trains
STEGO = "method=stego"  # on the run's backbone (the study's: EfficientNet-Lite0, ImageNet weights), frozen
STEGO_RANDOM = f"{STEGO} stego.pairs=random"  # its neighbour pairs replaced by random crops
# scored as papers since STEGO (lib/scoring.py): flip averaging, the dense CRF, both; on top of each
# method's own run (its label: the claim's name for it)
FLIP, CRF = "eval.flip=true", "eval.crf=true"
SCORED = (("flip averaging", FLIP), ("the dense CRF", CRF), ("flip averaging with the dense CRF", f"{FLIP} {CRF}"))
RESCORED = (("PiCIE", DEFAULT), ("IIC", IIC), ("STEGO", STEGO))


def _on(base, settings):
    return settings if base == DEFAULT else f"{base} {settings}"


CONFIGS = {name: [] if name == DEFAULT else name.split() for name in (
    DEFAULT, NOTRAIN, MDC, IIC, NO_PHOTOMETRIC, "aug.geometric=false", "model.classifier=linear",
    "cluster.k_over=32", SINGLE, "cluster.single=true loss.cross=false", "loss.balance=false",
    "loss.balance=proportional", "loss.balance=true", "loss.equivariance=mse", *(
        f"{IMBALANCED} {kv}".strip() for kv in ("", "loss.balance=false", "loss.balance=true", "cluster.k_over=32")),
    ZOOM, f"{ZOOM} {SINGLE}", ANY_HUE, MDC_FITTED, STEGO, STEGO_RANDOM,
    *(_on(base, settings) for _, base in RESCORED for _, settings in SCORED))}
SCORES = ("eval.acc", "eval.miou")
PROBE = ("probe.acc", "probe.miou")
# (paper table, claim, better config, worse config, metrics, the paper's (better, worse) (acc, mIoU))
CLAIMS = (
    ("1", "PiCIE beats no training", DEFAULT, NOTRAIN, SCORES, ((48.09, 13.84), (26.26, 8.41))),
    ("1", "PiCIE beats Modified DeepCluster", DEFAULT, MDC, SCORES, ((48.09, 13.84), (32.21, 9.79))),
    ("1", "PiCIE beats IIC", DEFAULT, IIC, SCORES, ((48.09, 13.84), (21.79, 6.71))),
    ("5", "photometric invariance helps", DEFAULT, NO_PHOTOMETRIC, SCORES,
     ((48.09, 13.84), (46.97, 12.04))),
    ("5", "geometric equivariance helps", DEFAULT, "aug.geometric=false", SCORES, ((48.09, 13.84), (42.55, 9.84))),
    ("5", "the non-parametric classifier beats a linear head", DEFAULT, "model.classifier=linear", SCORES, None),
    ("5", "overclustering (+H) helps", "cluster.k_over=32", DEFAULT, SCORES, ((49.99, 14.36), (48.09, 13.84))),
    # Table 6's "no inv." row is on top of "single" (single 44.31 / 11.71, single + no inv. 41.70 / 9.92)
    ("6", "the cross-view loss helps", SINGLE, "cluster.single=true loss.cross=false", SCORES,
     ((44.31, 11.71), (41.70, 9.92))),
    # the authors' runs, Table 6's among them, weighed clusters by their size (loss.balance: proportional);
    # the paper means rare clusters to weigh more (true: by 1 / size), which the paper has no number for
    ("6", "cluster balance helps (by cluster size: the authors' code)", "loss.balance=proportional",
     "loss.balance=false", SCORES, ((48.09, 13.84), (40.56, 11.46))),
    ("6", "cluster balance helps (by 1 / cluster size: the paper's intent)", "loss.balance=true",
     "loss.balance=false", SCORES, None),
    ("6", "the cross-view clustering loss beats MSE equivariance", DEFAULT, "loss.equivariance=mse", SCORES,
     ((48.09, 13.84), (44.15, 10.98))),
    ("6", "a clustering per view beats a single one", DEFAULT, SINGLE, SCORES, ((48.09, 13.84), (44.31, 11.71))),
    ("7", "PiCIE's features probe better than the untrained network's", DEFAULT, NOTRAIN, PROBE, None),
    ("7", "PiCIE's features probe better than Modified DeepCluster's", DEFAULT, MDC, PROBE,
     ((54.16, 13.89), (48.61, 13.30))),
    ("7", "PiCIE's features probe better than IIC's", DEFAULT, IIC, PROBE, ((54.16, 13.89), (44.50, 8.37))),
    # STEGO's (ICLR 2022) central claim, on the same frozen features `notrain` clusters (lib/methods/stego.py);
    # its paper's numbers are for DINO ViT-B/8 on COCO-Stuff-27, not this backbone: none is compared
    ("STEGO", "STEGO beats k-means on its own frozen backbone", STEGO, NOTRAIN, SCORES, None),
    ("STEGO", "STEGO's nearest-neighbour pairs beat random pairs", STEGO, STEGO_RANDOM, SCORES, None),
    ("STEGO", "STEGO beats PiCIE on the same backbone", STEGO, DEFAULT, SCORES + PROBE, None),
    # how papers since STEGO score (they report with and without): an experiment on these data, each method
    # against its own run scored as PiCIE's paper scores (the same trained network: only evaluate differs)
    *(("scoring", f"{how} helps {label}", _on(base, settings), base, SCORES, None)
      for label, base in RESCORED for how, settings in SCORED),
    # each step on top of the other: both runs of a pair score the one network the study trained for the
    # three rows above (a DVC run cache hit), where the base run may be another machine's training of it
    *(row for label, base in RESCORED for row in (
        ("scoring", f"the dense CRF helps {label} on top of flip averaging", _on(base, f"{FLIP} {CRF}"),
         _on(base, FLIP), SCORES, None),
        ("scoring", f"flip averaging helps {label} on top of the dense CRF", _on(base, f"{FLIP} {CRF}"),
         _on(base, CRF), SCORES, None))),
)
# Controlled experiments: where a claim does not reproduce here, what in this data decides it. The same
# shape as CLAIMS (better, worse, metrics), each with the claim it explains and what it tests.
EXPERIMENTS = (
    ("6", "balance by cluster size beats none when the classes are imbalanced", IMBALANCED,
     f"{IMBALANCED} loss.balance=false", SCORES,
     "the paper balances because COCO's clusters differ widely in size; the embedded classes cover 3.5-21 % of "
     "the pixels, `data.imbalance=20` 0.5-31 %"),
    ("6", "balance by 1 / cluster size beats none when the classes are imbalanced", f"{IMBALANCED} loss.balance=true",
     f"{IMBALANCED} loss.balance=false", SCORES, "as above, with the weighting the paper's text describes"),
    ("5", "overclustering (+H) helps when the classes are imbalanced", f"{IMBALANCED} cluster.k_over=32", IMBALANCED,
     SCORES, "with K clusters k-means splits frequent classes and merges rare ones; a second, finer clustering "
     "(the paper: it stabilises the clustering) may matter most with a long tail"),
    ("6", "a clustering per view beats a single one when the views differ more in scale", ZOOM, f"{ZOOM} {SINGLE}",
     SCORES, "the paper keeps two clusterings because the views hold different information (a zoomed-in and a "
     "full house); the authors' crops zoom in further than ours"),
    # without photometric views aug.hue is not read (lib/views.py): the pair differs in P alone, at hue 0.5
    ("5", "photometric invariance helps when its hue jitter spans the data's colours", ANY_HUE,
     NO_PHOTOMETRIC, SCORES, "the embedded data tint each region with any hue, so colour says nothing of "
     "the class; the authors' jitter turns hue by at most 0.1 of the circle, too little to make clusters "
     "colour-blind"),
    # not a claim of the paper's but one of its numbers: Table 1 has MDC 5.9 acc above no training, ours ~1
    ("1", "Modified DeepCluster gains when its fresh heads predict the clusters before the backbone follows",
     MDC_FITTED, MDC, SCORES + PROBE, "its linear heads are re-initialised every epoch, so the backbone's first "
     "gradients of an epoch come from random heads; its probe falls 10 acc below the untrained network's"),
)
TARGETS = ("evaluate", "probe")  # the stages a study run reproduces (no re-training, no report)


# Params that do not identify a configuration: the seeds a study varies, and train.allocator, which
# decides where the host's memory comes from, not a number the run computes (tests/test_train_stage.py
# trains under both allocators: the same weights and curves). Records made before it was a param count
# for today's runs whichever allocator these use. eval.workers: how many processes the CRF runs in (each
# image is one task, computed alike wherever it runs).
NOT_IDENTIFYING = ("seed", "data.seed", "train.allocator", "eval.workers")


def effective_params(params_text, settings):
    """The flat params a run of `settings` (-S key=value, values read as YAML, as DVC does) on top of
    params.yaml's text trains with, less those that do not identify it (NOT_IDENTIFYING): what identifies
    a configuration, whatever it is called (a tuned candidate today is `defaults` once params.yaml adopts it)."""
    flat = flatten(apply_settings(yaml.safe_load(params_text), settings))
    for key in NOT_IDENTIFYING:
        flat.pop(key, None)
    return flat


def digest(flat):
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def settings_name(flat, base):
    """A configuration named by how its params differ from base's ('defaults' when they do not);
    `key=-` for a key the run's params did not have yet."""
    def show(k):
        v = flat.get(k, "-")
        return v if isinstance(v, str) else json.dumps(v)

    keys = list(base) + sorted(set(flat) - set(base))
    return " ".join(f"{k}={show(k)}" for k in keys if flat.get(k, "-") != base.get(k, "-")) or DEFAULT


def run_key(digest_, seed, data_seed):
    return f"{digest_}|{seed}|{data_seed}"


# Params added after runs were recorded, with the value that computes what the code did before them
# (each one's test shows that value changes nothing): a record without the key ran with that value.
PREDATED = {"loss.temperature": 1.0, "aug.hue": 0.1, "cluster.restarts": 1, "train.threads": 0, "iic.heads": "sum",
            "cluster.head_fit": 0, "train.nproc": 1, "train.timeout": 600,
            "train.amp_cpu": False, "data.imbalance": 1, "model.freeze": False, "eval.flip": False,
            "eval.crf": False}
# A method's own params section (stego.*, added after runs were recorded) changes no other method's run,
# and the CRF's settings change nothing while eval.crf is off: a record made before one of their keys
# existed ran with whatever value it has today (from params.yaml, not restated here). PREDATED's explicit
# values come first (iic.heads: the older code's "sum"; eval.crf: off).
PREDATED_SECTIONS = methods.NAMES + ("eval",)


def read_runs(path, base=None):
    """The finished runs of a results file (JSON Lines); [] when there is none yet. A record older than
    a param of PREDATED gets its value, one older than a section of PREDATED_SECTIONS that section's values
    in `base` (today's effective params), and its digest from the params so completed."""
    path = Path(path)
    if not path.is_file():
        return []
    predated = {**{k: v for k, v in (base or {}).items() if k.split(".")[0] in PREDATED_SECTIONS}, **PREDATED}
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in runs:
        if "params" in r and any(k not in r["params"] for k in predated):
            r["params"] = {**{k: v for k, v in predated.items() if k not in r["params"]}, **r["params"]}
            r["digest"] = digest(r["params"])
    return runs


def append_run(path, record):
    """Add one finished run to the results file: a whole line, flushed, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()


def experiment_name(config, seed, data_seed):
    """The DVC experiment's name: a git ref, so the settings' spaces and '=' become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"study-{config}-s{seed}-d{data_seed}")


def clear_stale_runs(repo="."):
    """Remove what a study run killed mid-way (Ctrl-C, a lost session) leaves: DVC's record of a running
    temporary experiment (.dvc/tmp/exps/run/<rev>/<rev>.run) and its copy of the workspace. DVC counts
    a record as running while its status is at most SUCCESS and its copy exists (TempDirQueue.iter_active);
    `dvc exp remove` does not know such a record, `dvc exp show` lists it under the run's name, and the
    next attempt of that name fails. The study runs one experiment at a time, so at its start a study
    run that DVC counts as running is stale. The names of those removed."""
    tmp = (Path(repo) / ".dvc" / "tmp" / "exps").resolve()
    removed = []
    for info in sorted(tmp.glob("run/*/*.run")):
        try:
            d = json.loads(info.read_text())
        except (OSError, ValueError):
            continue
        root = Path(d.get("root_dir") or "/nonexistent").resolve()
        if (str(d.get("name", "")).startswith("study-") and d.get("location") == "tempdir"
                and d.get("status", 0) <= 3 and root.is_dir()):  # 3: dvc's TaskStatus.SUCCESS
            if tmp in root.parents:  # only DVC's own copy of the workspace
                shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(info.parent, ignore_errors=True)
            removed.append(d["name"])
    return removed


def run_one(config, seed, data_seed, settings):
    """One study run as a DVC experiment in a temporary directory (the workspace is left alone): its
    metrics by stem, those of the stages it reproduced."""
    name = experiment_name(config, seed, data_seed)
    files = metric_files()
    if experiment_metrics(json.loads(dvc("exp", "show", "--json")), {name}, files):
        dvc("exp", "remove", name)
    args = ["exp", "run", "--temp", "-n", name, "-S", f"seed={seed}", "-S", f"data.seed={data_seed}"]
    for kv in settings:
        args += ["-S", kv]
    dvc(*args, *TARGETS)
    found = experiment_metrics(json.loads(dvc("exp", "show", "--json")), {name}, files).get(name)
    if found is None:
        raise RuntimeError(f"study run {name} failed: see `dvc exp show` and its log above")
    made = set().union(*(stems_made_up_to(t) for t in TARGETS))
    return {stem: m for stem, m in found.items() if stem in made}


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


def by_config(runs, data_seed, digests):
    """{config: {seed: run}} of the runs on the given data variant whose params are the config's
    (digests: {config: digest}); the last record of a repeated run."""
    names = {}
    for config, d in digests.items():
        names.setdefault(d, []).append(config)
    out = {}
    for r in runs:
        if r["data_seed"] == data_seed:
            for config in names.get(r["digest"], ()):
                out.setdefault(config, {})[r["seed"]] = r
    return out


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


def _f(v, d=2):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{d}f}"


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
             f"{backbone_line(base)}", "", *CLAIMS_HEADER]
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
             f"`python -m stages.study --data \"{data}\" --only ...`. {backbone_line(base)}", "", *CLAIMS_HEADER]
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
