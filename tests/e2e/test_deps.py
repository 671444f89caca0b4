"""requirements.txt: installed at deploy into the function's own directory, cached by hash."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import httpx
from conftest import make_zip


def wheel(name: str, version: str, module_source: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel built in memory (no network, no build backend)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dayfly-tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


def deploy(server, name: str, bundle: bytes) -> list[dict]:
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy", content=bundle,
                      headers={"content-type": "application/zip"}, timeout=300) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line.strip()]


def test_requirements_are_installed_and_cached(server):
    whl_name, whl = wheel("dayfly_testdep", "1.0", "VALUE = 'from the wheel'\n")
    bundle = make_zip({
        "handler.py": """
            import dayfly_testdep
            def handler(event, context):
                return {"value": dayfly_testdep.VALUE, "file": dayfly_testdep.__file__}
        """,
        "requirements.txt": f"./{whl_name}\n",
        whl_name: whl,
    })
    t0 = time.monotonic()
    lines = deploy(server, "withdeps", bundle)
    first = time.monotonic() - t0
    assert "function" in lines[-1], lines[-1]
    assert any("dayfly_testdep" in line.get("progress", "") for line in lines)  # pip's output
    key = lines[-1]["function"]["Dayfly"]["DependenciesKey"]
    assert key and (Path(server.data_dir) / "deps" / key / "dayfly_testdep.py").is_file()

    out = httpx.post(f"{server.url}/2015-03-31/functions/withdeps/invocations", json={}).json()
    assert out["value"] == "from the wheel"
    tier = lines[-1]["function"]["Dayfly"]["Isolation"]
    # the function's own dependency directory: mounted at /var/deps in the jailed tiers
    # (/opt is the layers', as on Lambda)
    expected = "/var/deps" if tier in ("linux", "gvisor") else str(
        Path(server.data_dir) / "deps" / key)
    assert out["file"] == f"{expected}/dayfly_testdep.py"

    # same requirements again (code changed): the cached directory is reused, no pip run
    bundle2 = make_zip({
        "handler.py": "import dayfly_testdep\ndef handler(e, c):\n    return 2\n",
        "requirements.txt": f"./{whl_name}\n", whl_name: whl})
    t0 = time.monotonic()
    lines2 = deploy(server, "withdeps", bundle2)
    assert lines2[-1]["function"]["Dayfly"]["DependenciesKey"] == key
    assert any("cached" in line.get("progress", "") for line in lines2)
    assert time.monotonic() - t0 < first
    r = httpx.post(f"{server.url}/2015-03-31/functions/withdeps/invocations", json={})
    assert r.json() == 2


def test_uninstallable_requirements_are_refused_with_pips_words(server):
    bundle = make_zip({"handler.py": "def handler(e, c):\n    return 1\n",
                       "requirements.txt": "./no-such-file-1.0-py3-none-any.whl\n"})
    lines = deploy(server, "baddeps", bundle)
    err = lines[-1]["error"]
    assert err["status"] == 400 and "requirements.txt could not be installed" in err["message"]
    assert "no-such-file" in err["message"]
    assert httpx.get(f"{server.url}/2015-03-31/functions/baddeps").status_code == 404
