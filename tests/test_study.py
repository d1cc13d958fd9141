"""The fidelity study: paired statistics by hand, verdicts, and a record that resumes."""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import typer

import stages.study as study_stage
from lib.study.design import CLAIMS, CONFIGS, DEFAULT, EXPERIMENTS, IIC, IMBALANCED, MDC, MDC_FITTED, NOTRAIN
from lib.study.records import append_run, digest, effective_params, read_runs, settings_name
from lib.study.stats import claim_rows, paired, verdict
from lib.study.tables import fidelity_markdown, write_tables
from tests.conftest import ROOT


def test_paired_interval_against_a_hand_computed_one():
    better, worse = [30.0, 32.0, 37.0, 35.0, 31.0], [28.0, 31.0, 33.0, 34.0, 30.0]
    # differences 2, 1, 4, 1, 1: mean 1.8; sample variance (0.04 + 0.64 + 4.84 + 0.64 + 0.64) / 4 = 1.7;
    # t(0.975, 4 degrees of freedom) = 2.776445105; half width 2.776445105 * sqrt(1.7 / 5) = 1.618929
    mean, lo, hi, n = paired(better, worse)
    assert n == 5 and mean == pytest.approx(1.8)
    assert lo == pytest.approx(1.8 - 1.618929, abs=1e-5) and hi == pytest.approx(1.8 + 1.618929, abs=1e-5)
    assert paired([1.0], [0.0])[3] == 1 and math.isnan(paired([1.0], [0.0])[1])  # no interval from one pair


def _run(config, seed, acc, miou=10.0, probe=40.0, data_seed=0):
    return {"config": config, "seed": seed, "data_seed": data_seed, "digest": config, "commit": "c", "method": "x",
            "settings": CONFIGS[config], "metrics": {"eval": {"acc": acc, "miou": miou},
                                                     "probe": {"acc": probe, "miou": 20.0}}}


def test_scoring_pairs_say_how_many_scored_one_network():
    base = effective_params((ROOT / "params.yaml").read_text(), [])
    crf = "eval.crf=true"

    def record(config, seed, acc, final_loss, probe):
        params = {**base, "eval.crf": config == crf}
        return {**_run(config, seed, acc, probe=probe), "params": params,
                "metrics": {**_run(config, seed, acc, probe=probe)["metrics"],
                            # wall times differ between two trainings of one network: not compared
                            "train": {"final_loss": final_loss, "epoch_time_s": 30.0 + (config == crf)}}}
    # seed 0: the scoring run re-used the base's training (equal loss and probe); seed 1: a base trained
    # elsewhere (another loss); seed 2: the same loss but another probe score (another network)
    runs = [record(DEFAULT, 0, 40.0, 1.5, 50.0), record(crf, 0, 45.0, 1.5, 50.0),
            record(DEFAULT, 1, 41.0, 1.6, 51.0), record(crf, 1, 47.0, 1.7, 51.0),
            record(DEFAULT, 2, 39.0, 1.4, 52.0), record(crf, 2, 44.0, 1.4, 53.0)]
    rows = {(r["claim"], r["metric"]): r for r in claim_rows(runs, 0, {c: c for c in CONFIGS})}
    assert rows[("the dense CRF helps PiCIE", "eval.acc")]["one_network"] == 1
    assert "| 3 (1 of one network) |" in fidelity_markdown(runs, 0, "r", {c: c for c in CONFIGS}, base)
    # a pair that trains differently says nothing of networks
    runs += [{**record(DEFAULT, s, 30.0, 1.5, 50.0), "config": NOTRAIN, "digest": NOTRAIN,
              "params": {**base, "method": "notrain"}} for s in range(3)]
    rows = {(r["claim"], r["metric"]): r for r in claim_rows(runs, 0, {c: c for c in CONFIGS})}
    assert rows[("PiCIE beats no training", "eval.acc")]["one_network"] is None


def test_verdicts_follow_the_interval():
    runs = [_run(DEFAULT, s, 40.0 + s, probe=50.0) for s in range(3)]
    runs += [_run(NOTRAIN, s, 30.0 + 2 * s, probe=50.0 + s) for s in range(3)]  # PiCIE ahead in every seed
    runs += [_run(IIC, s, 45.0 + s) for s in range(3)]  # behind in every seed by exactly 5: reversed
    runs += [_run(DEFAULT, 0, 99.0, data_seed=1)]  # another data variant: not paired with these
    rows = {(r["claim"], r["metric"]): r for r in claim_rows(runs, 0, {c: c for c in CONFIGS})}
    notrain = rows[("PiCIE beats no training", "eval.acc")]
    assert (notrain["mean"], notrain["n"], notrain["verdict"]) == (9.0, 3, "yes")  # 10, 9, 8
    assert notrain["paper"] == pytest.approx(48.09 - 26.26)
    iic = rows[("PiCIE beats IIC", "eval.acc")]
    assert iic["mean"] == -5.0 and iic["verdict"] == "no: reversed"  # zero spread: the interval is the point
    miou = rows[("PiCIE beats no training", "eval.miou")]
    assert miou["mean"] == 0.0 and "not resolved" in miou["verdict"]  # equal in every seed
    assert miou["verdict"].endswith("smaller than the paper's +5.43")  # 13.84 - 8.41, outside [0, 0]
    probe = rows[("PiCIE's features probe better than the untrained network's", "probe.acc")]
    assert probe["mean"] == -1.0 and "spans 0" in probe["verdict"]  # differences 0, -1, -2
    assert rows[("PiCIE beats Modified DeepCluster", "eval.acc")]["verdict"].startswith("n/a")
    assert {c[2] for c in CLAIMS} | {c[3] for c in CLAIMS} <= set(CONFIGS)


def test_an_unresolved_interval_says_whether_it_holds_the_papers_effect():
    assert verdict(-1.0, 3.0, 5, paper=7.53) == "no: not resolved (interval spans 0); smaller than the paper's +7.53"
    assert verdict(-1.0, 3.0, 5, paper=1.12) == ("no: not resolved (interval spans 0); holds the paper's +1.12 too: "
                                                 "too few seeds to tell")
    assert verdict(-1.0, 3.0, 5) == "no: not resolved (interval spans 0)"  # a claim without the paper's number
    assert (verdict(0.5, 3.0, 5, 7.53), verdict(-3.0, -0.5, 5, 7.53), verdict(1.0, 1.0, 1, 7.53)[:3]) == \
        ("yes", "no: reversed", "n/a")


def test_controlled_experiments_are_paired_like_claims_in_their_own_table():
    none = f"{IMBALANCED} loss.balance=false"
    runs = [_run(IMBALANCED, s, acc, miou=10.0 + s) for s, acc in enumerate((30.0, 33.0, 31.0))]
    runs += [_run(none, s, acc, miou=10.0) for s, acc in enumerate((28.0, 30.0, 30.0))]
    runs += [_run(DEFAULT, s, 50.0) for s in range(3)]  # the uniform data's defaults: not part of the experiment
    text = fidelity_markdown(runs, 0, "runs.jsonl", {c: c for c in CONFIGS})
    table = text.split("## Controlled experiments")[1]
    # differences 2, 3, 1: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3) = 2.484138
    acc = next(line for line in table.splitlines() if f"`{IMBALANCED}` vs `{none}`" in line)
    assert "| eval.acc | +2.00 [-0.48, +4.48] | 3 | no: not resolved (interval spans 0) |" in acc, acc
    # mIoU differences 0, 1, 2: the same interval, one point lower; on the row after, without the names again
    miou = table.splitlines()[table.splitlines().index(acc) + 1]
    assert miou.startswith("|  |  |  | eval.miou | +1.00 [-1.48, +3.48] | 3 |"), miou
    assert {e[2] for e in EXPERIMENTS} | {e[3] for e in EXPERIMENTS} <= set(CONFIGS)
    assert "PiCIE beats no training" in text.split("## Controlled experiments")[0]  # the claims come first


def test_the_study_records_each_run_and_goes_on_where_it_stopped(tmp_path, monkeypatch, capsys):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)  # no reports/report.md here: nothing to re-render
    ran = []

    def fake_run(config, seed, data_seed, settings):
        if len(ran) == 5:
            raise KeyboardInterrupt  # stopped in the middle of the sixth run
        ran.append((config, seed))
        acc = 40.0 + seed if config == DEFAULT else 30.0
        return {"eval": {"acc": acc, "miou": 10.0}, "probe": {"acc": 50.0, "miou": 20.0},
                "train": {"epoch_time_s": 30.0}}

    monkeypatch.setattr(study_stage, "run_one", fake_run)
    args = dict(seeds=[0, 1, 2], data_seed=0, only=f"{DEFAULT},{NOTRAIN}", results="runs.jsonl", collect=False,
                out_dir="out", params="params.yaml", data="")
    with pytest.raises(KeyboardInterrupt):
        study_stage.main(**args)
    recorded = read_runs("runs.jsonl")
    assert [(r["config"], r["seed"]) for r in recorded] == ran == [(DEFAULT, 0), (NOTRAIN, 0), (DEFAULT, 1),
                                                                   (NOTRAIN, 1), (DEFAULT, 2)]
    assert recorded[1]["method"] == "notrain" and recorded[0]["method"] == "picie"
    # the kernels' instruction set: runs of one study may come from different machines
    assert {r["cpu"] for r in recorded} == {torch.backends.cpu.get_cpu_capability()}
    assert "PiCIE beats no training" in (tmp_path / "out/fidelity.md").read_text()  # written after every run
    ran.clear()
    study_stage.main(**args)
    assert ran == [(NOTRAIN, 2)]  # only what was missing
    text = (tmp_path / "out/fidelity.md").read_text()
    row = next(line for line in text.splitlines() if "PiCIE beats no training" in line and "eval.acc" in line)
    # differences 10, 11, 12: mean 11, sd 1, t(0.975, 2) = 4.302653 -> half width 2.48414
    assert "+11.00 [+8.52, +13.48] | 3 | yes |" in row, row
    assert "| No Train | `method=notrain` | 30.00 ± 0.00 |" in (tmp_path / "out/methods.md").read_text()
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["digest"] == digest(json.loads(line)["params"]) for line in lines)
    assert len({json.loads(line)["digest"] for line in lines}) == 2  # one per configuration
    # other params: the runs are not this study's, and nothing is skipped
    (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text().replace("epochs: auto", "epochs: 2"))
    ran.clear()
    study_stage.main(**{**args, "seeds": [0]})
    assert ran == [(DEFAULT, 0), (NOTRAIN, 0)]


def test_a_tuned_candidate_becomes_the_defaults_when_params_yaml_adopts_it(tmp_path, monkeypatch):
    """Runs are identified by their effective params, not by their name: candidate settings run on the
    tuning variant (any -S style settings) are the `defaults` runs once params.yaml takes them, and
    tuning.md names each row by how it differs from today's params.yaml."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    text = (tmp_path / "params.yaml").read_text()  # the test's starting point, whatever today's default
    (tmp_path / "params.yaml").write_text(re.sub(r"temperature: [0-9.]+", "temperature: 1.0", text))
    ran = []

    def fake_run(config, seed, data_seed, settings):
        ran.append((config, seed))
        acc = 40.0 + seed + (3.0 if "loss.temperature=0.5" in config else 0.0)
        return {"eval": {"acc": acc, "miou": 10.0}, "probe": {"acc": 50.0, "miou": 20.0}}

    monkeypatch.setattr(study_stage, "run_one", fake_run)
    args = dict(seeds=[0, 1], data_seed=1, only=f"{DEFAULT},loss.temperature=0.5 cluster.niter=20",
                results="runs.jsonl", collect=False, out_dir="out", params="params.yaml", data="")
    study_stage.main(**args)
    assert len(ran) == 4
    tuning = (tmp_path / "out/tuning.md").read_text()
    # cluster.niter=20 is already the default: the name shows only what differs; +3 in both seeds
    assert "| `loss.temperature=0.5` | 2 | 43.50 | 10.00 | 50.00 | 20.00 | `defaults` | +3.00 [+3.00, +3.00]" in tuning, tuning
    with pytest.raises(typer.BadParameter, match="loss.temprature=0.5"):
        study_stage.main(**{**args, "only": "loss.temprature=0.5"})
    text = (tmp_path / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("temperature: 1.0", "temperature: 0.5"))
    ran.clear()
    study_stage.main(**{**args, "only": DEFAULT})
    assert ran == []  # already run, under its old name
    tuning = (tmp_path / "out/tuning.md").read_text()
    # the candidate is compared with the defaults it was run against, now named by their difference
    assert "| `defaults` | 2 | 43.50 | 10.00 | 50.00 | 20.00 | `loss.temperature=1.0` | +3.00 [+3.00, +3.00]" in tuning
    assert "| `loss.temperature=1.0` | 2 | 40.50 | 10.00 | 50.00 | 20.00 | - | - |" in tuning, tuning


def test_other_data_runs_go_to_outside_md_and_not_into_the_embedded_sets_tables(tmp_path, monkeypatch):
    """--data: every configuration runs with the data's settings too; its claims and methods go to
    outside.md, and the embedded set's fidelity.md neither counts them nor is it counted in outside.md."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    ran = []

    def fake_run(config, seed, data_seed, settings):
        ran.append((config, seed, tuple(settings)))
        acc = (20.0 if "data.name=folder" in settings else 40.0) + (seed if config == DEFAULT else 0.0)
        return {"eval": {"acc": acc, "miou": 10.0}, "probe": {"acc": 50.0, "miou": 20.0}}

    monkeypatch.setattr(study_stage, "run_one", fake_run)
    data = "data.name=folder data.root=/somewhere/mine"
    args = dict(seeds=[1, 2], data_seed=0, only=f"{DEFAULT},{IIC}", results="runs.jsonl", collect=False,
                out_dir="out", params="params.yaml", data=data)
    study_stage.main(**args)
    assert ran[0] == (DEFAULT, 1, ("data.name=folder", "data.root=/somewhere/mine"))
    assert ran[1] == (IIC, 1, ("data.name=folder", "data.root=/somewhere/mine", "method=iic"))
    outside = (tmp_path / "out/outside.md").read_text()
    # PiCIE 21, 22 against IIC 20, 20: differences 1, 2 -> mean 1.5, sd 0.7071, t(0.975, 1) = 12.7062
    row = next(line for line in outside.splitlines() if "PiCIE beats IIC" in line and "eval.acc" in line)
    assert "+1.50 [-4.85, +7.85] | 2 | no: not resolved" in row, row
    assert "no training" not in outside  # rows without a paired seed are left out
    assert not (tmp_path / "out/fidelity.md").exists()
    ran.clear()
    study_stage.main(**{**args, "data": "", "seeds": [1]})  # the embedded set: nothing of the above is reused
    assert [r[:2] for r in ran] == [(DEFAULT, 1), (IIC, 1)]
    row = next(line for line in (tmp_path / "out/fidelity.md").read_text().splitlines()
               if "PiCIE beats IIC" in line and "eval.acc" in line)
    assert "| +1.00 [n/a, n/a] | 1 |" in row, row
    with pytest.raises(typer.BadParameter, match="--data: 'data.rot=/x'"):
        study_stage.main(**{**args, "data": "data.name=folder data.rot=/x"})


STALLING_STAGE = """stages:
  s:
    cmd: python -c "import json, pathlib, time; pathlib.Path('{started}').touch(); time.sleep(float(open('wait.txt').read())); json.dump(dict(final_loss=1.5), open('train.json', 'w'))"
    deps: [wait.txt]
    params: [seed]
    metrics: [train.json]
"""

RUN = ("import sys; from lib.study.runner import run; "
       "print(run(['seed=' + sys.argv[1]], [], sys.argv[2], sys.argv[3]))")


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_that_stops_the_next_start(tmp_path):
    """What a lost session leaves of a study run: the runner killed (SIGKILL, with DVC and its stage) while
    the stage runs. Its copy of the workspace is all that remains; the next run removes it, runs, and
    reads its own metrics; the workspace was never written to, and DVC holds no experiment of either."""
    repo, started, root = tmp_path / "repo", tmp_path / "started", tmp_path / "copies"
    repo.mkdir()
    root.mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               DVC_NO_ANALYTICS="1", PYTHONPATH=str(ROOT))
    (repo / "dvc.yaml").write_text(STALLING_STAGE.format(started=started))
    (repo / "params.yaml").write_text("seed: 0\n")
    (repo / "wait.txt").write_text("600")
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    lost = subprocess.Popen([sys.executable, "-c", RUN, "1", str(repo), str(root)], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not started.exists() and lost.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert started.exists(), "the run's stage never started"
    finally:
        os.killpg(lost.pid, signal.SIGKILL)  # the session is lost: the runner, DVC, its stage, everything
        lost.wait()
    (left,) = root.iterdir()  # what it leaves: its copy, owned by a process that is gone
    (repo / "wait.txt").write_text("0")  # a change of the workspace, not committed: the run copies it
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True,
                            check=True).stdout
    done = subprocess.run([sys.executable, "-c", RUN, "2", str(repo), str(root)], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "{'train': {'final_loss': 1.5}}"
    assert not left.exists() and not list(root.iterdir())  # the stale copy and the run's own are gone
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True,
                           check=True).stdout
    # nothing written into the workspace; its DVC cache holds the run's outputs (the next run's run cache)
    assert [line for line in after.splitlines() if ".dvc/" not in line] == [" M wait.txt"]
    assert before.splitlines()[0] == " M wait.txt" and (repo / ".dvc/cache/runs").is_dir()
    show = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo, env=env,
                          capture_output=True, text=True, check=True).stdout
    assert not [e for b in json.loads(show) for e in b.get("experiments") or []]


def test_records_that_predate_a_param_ran_with_its_neutral_value(tmp_path):
    from lib.study.records import PREDATED

    now = {**effective_params((ROOT / "params.yaml").read_text(), []), **PREDATED}
    old = {k: v for k, v in now.items() if k not in PREDATED}
    append_run(tmp_path / "r.jsonl", {"params": old, "digest": digest(old)})
    append_run(tmp_path / "r.jsonl", {"params": {**old, "aug.hue": 0.5}, "digest": "x"})
    same, hue = read_runs(tmp_path / "r.jsonl")
    assert same["digest"] == digest(now) and same["params"] == now
    assert hue["params"]["aug.hue"] == 0.5 and hue["digest"] == digest({**now, "aug.hue": 0.5})


def test_records_that_predate_the_eval_section_were_scored_without_flip_or_crf(tmp_path):
    """A record made before eval.* existed counts as today's default run (eval.flip, eval.crf off; the CRF's
    settings, unread then, as params.yaml has them), not as a run with the CRF."""
    base = effective_params((ROOT / "params.yaml").read_text(), [])
    old = {k: v for k, v in base.items() if not k.startswith("eval.")}
    append_run(tmp_path / "r.jsonl", {"params": old, "digest": digest(old)})
    (record,) = read_runs(tmp_path / "r.jsonl", base)
    assert record["digest"] == digest(base)
    assert record["digest"] != digest(effective_params((ROOT / "params.yaml").read_text(), ["eval.crf=true"]))


def test_the_tables_say_which_backbone_every_run_started_from():
    base = effective_params((ROOT / "params.yaml").read_text(), [])
    text = fidelity_markdown([], 0, "runs.jsonl", {c: c for c in CONFIGS}, base)
    assert f"Every run's backbone: `{base['model.backbone']}` from its `{base['model.weights']}` weights" in text
    random_init = {**base, "model.weights": ""}
    assert "from random initialisation" in fidelity_markdown([], 0, "r", {c: c for c in CONFIGS}, random_init)
    # each method's part is its registry row's rule: STEGO's frozen backbone, No Train's untrained one
    assert "trained by PiCIE, Modified DeepCluster and IIC;" in text
    assert "kept frozen under a trained head by STEGO" in text and "clustered as it is by No Train" in text
    frozen = fidelity_markdown([], 0, "r", {c: c for c in CONFIGS}, {**base, "model.freeze": True})
    assert "kept frozen under a trained head by PiCIE, Modified DeepCluster, IIC and STEGO" in frozen


def test_effective_params_apply_settings_as_dvc_reads_them():
    text = "seed: 3\nmethod: picie\ndata: {seed: 1, res: auto}\nloss: {temperature: 1.0, cross: true}\n"
    flat = effective_params(text, ["loss.temperature=0.1", "loss.cross=false", "method=iic"])
    assert flat == {"method": "iic", "data.res": "auto", "loss.temperature": 0.1, "loss.cross": False}
    base = effective_params(text, [])
    assert settings_name(flat, base) == "method=iic loss.temperature=0.1 loss.cross=false"
    assert settings_name(base, base) == DEFAULT and digest(base) != digest(flat)
    assert settings_name({k: v for k, v in base.items() if k != "loss.cross"}, base) == "loss.cross=-"


def test_append_run_writes_whole_lines(tmp_path):
    append_run(tmp_path / "r.jsonl", {"a": 1})
    append_run(tmp_path / "r.jsonl", {"a": 2})
    assert read_runs(tmp_path / "r.jsonl") == [{"a": 1}, {"a": 2}] and read_runs(tmp_path / "none.jsonl") == []


def test_mdc_with_fitted_heads_is_a_method_row_not_a_picie_ablation(tmp_path):
    """The head_fit experiment's MDC runs belong to methods.md (labelled Modified DeepCluster), not to
    'PiCIE's ablations', and its experiment row pairs them with plain MDC seed by seed."""
    runs = [{**_run(c, s, acc, probe=probe), "method": "mdc"} for s in range(3)
            for c, acc, probe in ((MDC, 30.0 + s, 40.0), (MDC_FITTED, 31.0 + 2 * s, 42.0))]
    write_tables(runs, {c: c for c in CONFIGS}, {"data.name": "textures", "data.root": ""}, "runs.jsonl",
                 str(tmp_path))
    methods_md, ablations_md = (tmp_path / "methods.md").read_text(), (tmp_path / "ablations.md").read_text()
    assert "| Modified DeepCluster | `method=mdc` `cluster.head_fit=3` | 33.00 ± 2.00 |" in methods_md
    assert "head_fit" not in ablations_md
    fidelity = (tmp_path / "fidelity.md").read_text().splitlines()
    at = next(i for i, line in enumerate(fidelity) if f"`{MDC_FITTED}` vs `{MDC}`" in line)
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half width 2.48414; probe +2 in every seed
    assert "| eval.acc | +2.00 [-0.48, +4.48] | 3 |" in fidelity[at]
    assert "| probe.acc | +2.00 [+2.00, +2.00] | 3 | yes |" in fidelity[at + 2]


def test_no_runtime_setting_identifies_a_configuration_and_old_records_read_under_todays_names(tmp_path):
    """The runtime section decides where and how fast a run computes, not what: a run under any of its values
    is today's configuration, and so is a record of an earlier version that named them train.threads,
    train.device, train.allocator, data.workers (and loss.scores, report.neighbours: loss.logits,
    report.retrieved today)."""
    text = (ROOT / "params.yaml").read_text()
    today = effective_params(text, [])
    assert not [k for k in today if k.startswith("runtime.")] and "seed" not in today and "data.seed" not in today
    for kv in ("runtime.allocator=system", "runtime.threads=1", "runtime.device=cpu", "runtime.inference_batch=4",
               "runtime.workers=3", "runtime.timeout=5"):
        assert digest(effective_params(text, [kv])) == digest(today), kv
    assert digest(effective_params(text, ["train.lr=0.01"])) != digest(today)  # a param that does identify
    old = {("loss.scores" if k == "loss.logits" else "report.neighbours" if k == "report.retrieved" else k): v
           for k, v in today.items()}
    old.update({"train.threads": 1, "train.device": "auto", "train.allocator": "reuse", "data.workers": 0})
    append_run(tmp_path / "r.jsonl", {"params": old, "digest": digest(old), "settings": []})
    dot = {**old, "loss.scores": "dot"}
    append_run(tmp_path / "r.jsonl", {"params": dot, "digest": digest(dot), "settings": ["loss.scores=dot"]})
    same, other = read_runs(tmp_path / "r.jsonl", today)
    assert same["params"] == today and same["digest"] == digest(today)
    assert other["digest"] == digest(effective_params(text, ["loss.logits=dot"]))
    assert other["settings"] == ["loss.logits=dot"]


def test_the_study_figure_draws_the_claims_of_the_table(tmp_path):
    """reports/study/fidelity.png: one row per claim and read-out with a paired seed, its mean, interval and
    the paper's number as fidelity.md states them; written, and linked from the table, by write_tables."""
    runs = [{**_run(c, s, acc + s * bump, probe=50.0 + s * bump), "method": m} for s in range(3)
            for c, m, acc, bump in ((DEFAULT, "picie", 40.0, 1.0), (NOTRAIN, "notrain", 30.0, 0.0),
                                    (MDC, "mdc", 35.0, 0.5))]
    drawn = write_tables(runs, {c: c for c in CONFIGS}, {"data.name": "textures", "data.root": ""}, "runs.jsonl",
                         str(tmp_path))
    figure = tmp_path / "study/fidelity.png"
    assert list(drawn) == [figure] and figure.stat().st_size > 10_000
    table = (tmp_path / "fidelity.md").read_text()
    assert "![each claim's paired difference and interval against 0 and the paper's](study/fidelity.png)" in table
    lines = [line for line in table.split("## Controlled experiments")[0].splitlines() if line.startswith("| ")]
    shown = {(label, score): r for label, by_score in drawn[figure] for score, r in by_score.items()}
    # the table's rows with a paired seed: PiCIE vs no training and vs MDC, clustering and probe read-outs
    with_seeds = [line for line in lines[1:] if line.split(" | ")[5].strip() not in ("0", "")]
    assert len(with_seeds) == len(shown) == 4 * 2  # Table 1's and Table 7's claims against No Train and MDC
    for (label, score), r in shown.items():
        claim = label.split("] ", 1)[1].replace(" (linear probe)", "")
        metric = ("probe." if label.endswith("(linear probe)") else "eval.") + score
        line = next(line for line in with_seeds if f"| {claim} (`" in line and f"| {metric} |" in line)
        interval = f"{r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"
        assert f"| {interval} | {r['n']} |" in line, (line, interval)
        assert (r["paper"] is None) == ("| n/a |" in line.split(metric)[1][:8]), line


def test_a_runtime_setting_is_refused_as_a_configuration_with_where_it_goes(tmp_path, monkeypatch):
    """The runtime section names no configuration (a run computes the same under any of its values): `--only`
    and `--data` refuse it with where it goes instead; the seeds the study varies are no setting either."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(study_stage, "run_one", lambda *a: pytest.fail("nothing may run"))
    args = dict(seeds=[0], data_seed=0, only=DEFAULT, results="runs.jsonl", collect=False, out_dir="out",
                params="params.yaml", data="")
    for option, value in (("only", "runtime.threads=1"), ("data", "data.name=folder runtime.workers=1")):
        with pytest.raises(typer.BadParameter, match=f"--{option}: 'runtime.[a-z]+=1' is a runtime setting, .* "
                                                     "set it in params.yaml's runtime section"):
            study_stage.main(**{**args, option: value})
    with pytest.raises(typer.BadParameter, match="--only: 'seed=3' is not a `key=value` setting"):
        study_stage.main(**{**args, "only": "seed=3"})


def test_stegos_loss_settings_as_numbers_and_as_auto_are_one_configuration(tmp_path):
    """Records made when params.yaml gave STEGO's loss settings as numbers (the block `auto` takes on the
    embedded data) are today's `method=stego` runs; another data set's block is another configuration."""
    from lib.methods.stego_settings import BLOCKS, KEYS

    text = (ROOT / "params.yaml").read_text()
    today = effective_params(text, ["method=stego"])
    numbers = [f"stego.{k}={v}" for k, v in zip(KEYS, BLOCKS["IAROA vit small 1/31/22"])]
    assert digest(effective_params(text, ["method=stego", *numbers])) == digest(today)
    assert today["stego.rand_shift"] == 0.46
    coco = effective_params(text, ["method=stego", "data.name=cocostuff27", "data.root=/x"])
    assert coco["stego.rand_shift"] == 0.66 and digest(coco) != digest(effective_params(
        text, ["method=stego", "data.name=cocostuff27", "data.root=/x", "stego.rand_shift=0.46"]))
