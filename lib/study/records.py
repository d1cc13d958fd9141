"""The record of finished runs: one JSON line per run (config, settings, seed, data seed, the resolved
params and their digest, commit, metrics), committed with the project. It, not DVC's local experiment
refs, is the record, so a study can stop and go on later on another machine; runs already in it are
skipped. A run is identified by the params it ran with, not by its name.
"""
import hashlib
import json
from pathlib import Path

import yaml

from lib import methods
from lib.config import RENAMED, apply_settings, flatten
from lib.study.design import DEFAULT

# Params that do not identify a configuration: the seeds a study varies, and the runtime section, which
# decides where and how fast a run computes, not what (docs/pipeline.md); records made under its keys'
# earlier names (lib/config.RENAMED) have them dropped alike.
NOT_IDENTIFYING_SECTIONS = ("runtime",)
NOT_IDENTIFYING = ("seed", "data.seed")

# Params added after runs were recorded, with the value that computes what the code did before them
# (each one's test shows that value changes nothing): a record without the key ran with that value.
PREDATED = {"loss.temperature": 1.0, "aug.hue": 0.1, "cluster.restarts": 1, "iic.heads": "sum",
            "cluster.head_fit": 0, "train.nproc": 1, "train.amp_cpu": False, "data.imbalance": 1,
            "model.freeze": False, "eval.flip": False, "eval.crf": False,
            "frozen.cache": False, "frozen.dtype": "float16"}  # the trunk recomputed every step
# A method's own params section (stego.*, added after runs were recorded) changes no other method's run,
# and the CRF's settings change nothing while eval.crf is off: a record made before one of their keys
# existed ran with whatever value it has today (from params.yaml, not restated here). PREDATED's explicit
# values come first (iic.heads: the older code's "sum"; eval.crf: off).
PREDATED_SECTIONS = methods.NAMES + ("eval",)


def identifying(flat):
    """The flat params less those that do not identify a configuration."""
    return {k: v for k, v in flat.items()
            if k not in NOT_IDENTIFYING and k.split(".")[0] not in NOT_IDENTIFYING_SECTIONS}


def effective_params(params_text, settings):
    """The flat params a run of `settings` (-S key=value, values read as YAML, as DVC does) on top of
    params.yaml's text trains with, less those that do not identify it: what identifies a configuration,
    whatever it is called (a tuned candidate today is `defaults` once params.yaml adopts it). A method's
    own `auto` values that follow from the data and the backbone (STEGO's loss settings) are resolved:
    they were numbers in params.yaml before they were `auto`, and the same numbers are the same run."""
    return identifying(methods.resolve_auto(flatten(apply_settings(yaml.safe_load(params_text), settings))))


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


def today(params):
    """A record's params under today's names (lib/config.RENAMED), less what does not identify a run."""
    return identifying({RENAMED.get(k, k): v for k, v in params.items()})


def _renamed(setting):
    key, value = setting.split("=", 1)
    return f"{RENAMED.get(key, key)}={value}"


def read_runs(path, base=None):
    """The finished runs of a results file (JSON Lines); [] when there is none yet. A record's params are
    read under today's names; one older than a param of PREDATED gets its value, one older than a section
    of PREDATED_SECTIONS that section's values in `base` (today's effective params); its digest is that
    of the params so completed."""
    path = Path(path)
    if not path.is_file():
        return []
    predated = {**{k: v for k, v in (base or {}).items() if k.split(".")[0] in PREDATED_SECTIONS}, **PREDATED}
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in runs:
        if "settings" in r:
            r["settings"] = [_renamed(kv) for kv in r["settings"]]
        if "params" in r:
            now = today(r["params"])
            now = {**{k: v for k, v in predated.items() if k not in now}, **now}
            if now != r["params"]:
                r["params"], r["digest"] = now, digest(now)
    return runs


def append_run(path, record):
    """Add one finished run to the results file: a whole line, flushed, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()


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
