"""dvc.yaml must track the code each stage runs and the params it reads, and be the one place that
states the stages' paths."""
import importlib
import inspect
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PROBE = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
         "print('\\n'.join(sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None))))")
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _module(stage):
    argv = shlex.split(stage["cmd"])
    return argv[argv.index("-m") + 1]


def _options(stage):
    """{option: value} of the stage's cmd (`--live-dir x` -> {"live_dir": "x"})."""
    argv = shlex.split(stage["cmd"])
    return {a[2:].replace("-", "_"): v for a, v in zip(argv, argv[1:]) if a.startswith("--")}


def _imported_files(stage):
    """The files of every module the stage's module imports, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", PROBE, _module(stage)], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def test_the_stages_dvc_always_runs_start_without_torch():
    """`always_changed` stages run on every `dvc repro`, even of unchanged work: importing torch would be
    ~2.5 s of each."""
    always = [name for name, stage in STAGES.items() if stage.get("always_changed")]
    assert always == ["fingerprint"]
    for name in always:
        out = _imported_files(STAGES[name])
        assert not [f for f in out if "/torch/" in f], f"stage {name} imports torch"


@pytest.mark.slow
def test_every_stage_depends_on_the_lib_code_it_imports():
    for name, stage in STAGES.items():
        out = _imported_files(stage)
        lib = ROOT / "lib"
        imported = sorted(str(Path(f).relative_to(ROOT)) for f in out
                          if f.startswith(str(lib)) and not f.endswith("lib/__init__.py"))
        assert imported, name
        deps = [d.rstrip("/") for d in stage["deps"]]
        missing = [f for f in imported if not any(f == d or f.startswith(d + "/") for d in deps)]
        assert not missing, f"stage {name} imports {missing} but does not list them under deps"
        assert f"stages/{name}.py" in deps


def test_stages_that_read_more_than_the_data_depend_on_the_method_modules():
    """Method modules are imported by name at run time (lib.methods.get), which the import probe above
    does not see: they decide the `auto` params (train.batch_size, model.classifier), rebuild the
    methods' networks and describe the method in the report. Only a stage that reads nothing but the
    data section is free of them."""
    for name, stage in STAGES.items():
        if all(key == "data" or key.startswith("data.") for key in stage.get("params", [])):
            assert "lib/methods" not in stage["deps"], name  # preparing data does not re-run for method code
        else:
            assert "lib/methods" in stage["deps"], f"stage {name} reads method-dependent params"


def test_no_stage_lists_a_runtime_setting():
    """runtime.* decide where and how fast a stage computes, not what: a stage listing one would re-run (and
    throw away cached work) for a change of device, threads, allocator or inference batch."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params["runtime"]) == {"device", "threads", "workers", "allocator", "inference_batch", "timeout"}
    for name, stage in STAGES.items():
        listed = [str(k) for k in stage.get("params", [])]
        assert not [k for k in listed if k == "runtime" or k.startswith("runtime.")], name


def test_every_stage_starts_from_the_one_setup():
    """A stage's preamble (params, threads, allocator, device, seeds, prepared data) is lib.cli.setup's, not
    written out again: a stage is its own logic plus that call."""
    for name, stage in STAGES.items():
        source = (ROOT / "stages" / f"{_module(stage).split('.')[-1]}.py").read_text()
        assert "setup(" in source, name
        reads_data = "data" in _options(stage)  # (prepare opens the folder it wrote, to count its pixels)
        for own in ("load_params(", "set_threads(", "set_allocator(", "pick_device(", "seed_everything(",
                    *(["Prepared("] if reads_data else [])):
            assert own not in source, f"stages/{name}.py calls {own[:-1]} itself"


def test_params_sections_exist_in_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in STAGES.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} lists params key {key}, absent from params.yaml"
                node = node[part]


def test_paths_are_stated_in_dvc_yaml_and_passed_by_the_cmd():
    """Each stage script takes its paths from its cmd (no defaults restating them in Python), and every
    path the cmd passes is a dep or an output of the stage (the checkpoint alone is neither: DVC would
    delete an output before the run that resumes from it)."""
    for name, stage in STAGES.items():
        main = importlib.import_module(_module(stage)).main
        options = _options(stage)
        declared = {str(next(iter(e))) if isinstance(e, dict) else str(e)
                    for kind in ("deps", "outs", "metrics", "plots") for e in stage.get(kind, [])}
        for arg, param in inspect.signature(main).parameters.items():
            if arg in ("params", "dvc_yaml", "tables"):
                continue
            assert getattr(param.default, "default", None) is ..., f"stages/{name}.py: --{arg} has a default"
            assert arg in options, f"stage {name}'s cmd does not pass --{arg.replace('_', '-')}"
        for arg, path in options.items():
            assert path in declared or path.startswith("runs/"), f"stage {name}: --{arg} {path} is not declared"
