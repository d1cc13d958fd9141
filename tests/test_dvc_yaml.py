"""dvc.yaml must track the code each stage runs and the params it reads."""
import subprocess
import sys

import yaml

from tests.conftest import ROOT

PROBE = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
         "print('\\n'.join(sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None))))")


def test_every_stage_depends_on_the_lib_code_it_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        module = stage["cmd"].split()[-1]  # python -m stages.<name>
        out = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        lib = ROOT / "lib"
        imported = sorted(str(__import__("pathlib").Path(f).relative_to(ROOT)) for f in out
                          if f.startswith(str(lib)) and not f.endswith("lib/__init__.py"))
        assert imported, name
        deps = [d.rstrip("/") for d in stage["deps"]]
        missing = [f for f in imported if not any(f == d or f.startswith(d + "/") for d in deps)]
        assert not missing, f"stage {name} imports {missing} but does not list them under deps"
        assert f"stages/{name}.py" in deps


def test_params_sections_exist_in_params_yaml():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} lists params key {key}, absent from params.yaml"
                node = node[part]
