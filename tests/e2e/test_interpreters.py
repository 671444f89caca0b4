"""Each function runs on the interpreter its runtime names (sandbox/lang.py): one zygote per
interpreter, dependencies built with that interpreter, a runtime with no interpreter on the
node refused at deploy with a 400, and `dayfly doctor` listing what it found."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile

import botocore.exceptions
import httpx
import pytest
from conftest import ALLOW_WEAK, make_zip
from e2e_helpers import ROLE, unique_name

from dayfly.sandbox import lang

SERVER_ARGS = ALLOW_WEAK
SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts
FOUND = lang.interpreters()
HANDLER = """
import os, sys
def handler(event, context):
    return {"version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable,
            "pid": os.getpid(), "ppid": os.getppid()}
"""
needs_312 = pytest.mark.skipif("python3.12" not in FOUND, reason="no python3.12 on this machine")


def cp_wheel(name: str, tag: str) -> tuple[str, bytes]:
    """A wheel only the interpreter of `tag` (cp312) accepts: pip of another refuses it."""
    dist = f"{name}-1.0.dist-info"
    files = {f"{name}.py": b"import sys\nBUILT_FOR = sys.version_info[:2]\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{dist}/WHEEL": f"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                              f"Tag: {tag}-none-any\n".encode()}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
              f"{len(d)}" for p, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{name}-1.0-{tag}-none-any.whl", buf.getvalue()


def deploy(server, name: str, files: dict[str, str | bytes]) -> dict:
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip(files), headers={"content-type": "application/zip"},
                      timeout=300) as r:
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    return lines[-1]


def call(lam, name: str) -> dict:
    resp = lam.invoke(FunctionName=name, Payload=b"{}")
    body = resp["Payload"].read()
    assert "FunctionError" not in resp, body
    return json.loads(body)


@needs_312
@pytest.mark.parametrize("tier", ["linux", "gvisor", "process"])
def test_runtime_names_the_interpreter(server, lam, tier):
    toml = f'isolation = "{tier}"\ntimeout = 30\n'
    names = {}
    for runtime in sorted(FOUND):  # every interpreter found (3.10 to 3.13 here)
        names[runtime] = unique_name(f"{runtime}-{tier}").replace(".", "")
        lam.create_function(FunctionName=names[runtime], Runtime=runtime, Role=ROLE,
                            Handler="handler.handler", Timeout=30,
                            Code={"ZipFile": make_zip({"handler.py": HANDLER,
                                                       "dayfly.toml": toml})})
    seen = {r: call(lam, names[r]) for r in names}
    for runtime, out in seen.items():  # not dayfly's own 3.11 for all, as before
        assert out["version"] == FOUND[runtime].version, (runtime, out)
    old, new = seen["python3.11"], seen["python3.12"]
    assert lam.get_function(FunctionName=names["python3.12"])["Configuration"][
        "Runtime"] == "python3.12"
    if tier == "process":  # instances are the zygotes' children: two interpreters, two zygotes
        assert old["ppid"] != new["ppid"]
        assert new["executable"] == FOUND["python3.12"].executable
    else:  # the staged interpreter at its neutral path
        assert new["executable"].startswith("/var/lang/bin/python3")


@needs_312
def test_dependencies_are_built_with_that_interpreter(server, lam):
    whl_name, whl = cp_wheel("only312", "cp312")
    name = unique_name("deps312")
    out = deploy(server, name, {"handler.py": "import only312\ndef handler(e, c):\n"
                                              "    return list(only312.BUILT_FOR)\n",
                                "requirements.txt": f"./{whl_name}\n", whl_name: whl,
                                "dayfly.toml": 'runtime = "python3.12"\n'})
    assert "function" in out, out  # pip of 3.11 would refuse a cp312 wheel
    assert call(lam, name) == [3, 12]
    refused = deploy(server, unique_name("deps311"), {
        "handler.py": "def handler(e, c):\n    return 1\n",
        "requirements.txt": f"./{whl_name}\n", whl_name: whl})  # python3.11 (default)
    assert refused["error"]["status"] == 400
    assert "not a supported wheel" in refused["error"]["message"]


def test_a_runtime_without_interpreter_is_refused(server, lam):
    missing = next(r for r in ("python3.9", "python3.10", "python3.13") if r not in FOUND)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        lam.create_function(FunctionName=unique_name("nope"), Runtime=missing, Role=ROLE,
                            Handler="handler.handler",
                            Code={"ZipFile": make_zip({"handler.py": HANDLER})})
    resp = err.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert resp["Error"]["Code"] == "InvalidParameterValueException"
    assert f"runtime {missing} has no interpreter on this node" in resp["Error"]["Message"]
    out = deploy(server, unique_name("nope"), {"handler.py": HANDLER,
                                               "dayfly.toml": f'runtime = "{missing}"\n'})
    assert out["error"]["status"] == 400 and "no interpreter" in out["error"]["message"]


def test_doctor_lists_interpreters():
    out = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "doctor", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    found = {i["runtime"]: i for i in json.loads(out.stdout)["interpreters"]}
    assert found.keys() == FOUND.keys()
    own = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert found[own]["default"] and found[own]["version"] == ".".join(map(str, sys.version_info[:3]))
