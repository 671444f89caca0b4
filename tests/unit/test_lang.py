"""The interpreter staged for sandboxes (sandbox/lang.py) is the installation's, also when the
platform runs from a virtual environment (scripts/up and scripts/test use .venv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGE = """
import json, sys
from pathlib import Path
from dayfly.sandbox import lang
staged = lang.stage(Path(sys.argv[1]))
print(json.dumps({"layers": staged.layers, "prefix": sys.prefix}))
"""


def test_a_virtual_environment_stages_the_base_installation(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([str(venv / "bin" / "python"), "-c", STAGE, str(tmp_path / "lang")],
                         env=env, capture_output=True, text=True, check=True)
    staged = json.loads(out.stdout)
    assert Path(staged["prefix"]) == venv  # it really ran inside the environment
    sources = [src for src, _ in staged["layers"][1:]]  # after the staged binary itself
    assert sources and all(not src.startswith(str(venv)) for src in sources), sources
    # the directory mounted where the interpreter looks for its standard library has it
    stdlib = dict((dest, src) for src, dest in staged["layers"])
    wanted = f"{sys.platlibdir}/python{sys.version_info[0]}.{sys.version_info[1]}"
    assert (Path(stdlib[f"/var/lang/{wanted}"]) / "os.py").is_file()
    assert (Path(stdlib[f"/var/lang/{wanted}"]) / "encodings").is_dir()
