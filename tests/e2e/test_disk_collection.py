"""Disk collection against a real server: after updates and deletes, bundles/, code/ and deps/
hold only what live versions use; a running instance keeps its code until it is done; what a
kill -9 left is collected at the next start; code over the unzipped limit is refused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import signal
import tempfile
import threading
import zipfile
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from conftest import children_of, make_zip, start_server, stop_server
from e2e_helpers import ROLE, create, invoke, unique_name, wait_for
from hostile_zips import zeros_bomb
from test_deps import wheel

MAX_UNZIPPED = 262_144_000
TOO_BIG = f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # grace 0: code is removed as soon as nothing uses it (the default waits out zygotes)
    srv = start_server(tmp_path_factory.mktemp("collect") / "data", "--code-grace", "0")
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def gate():
    """A folder the test opens a gate in (a file); outside /tmp, which no function may declare."""
    d = Path(tempfile.mkdtemp(prefix="dayfly-gate-", dir="/var/tmp"))
    d.chmod(0o755)  # instances run as their own uid
    yield d
    shutil.rmtree(d)


def hex_of(code_sha256: str) -> str:
    return base64.b64decode(code_sha256).hex()


def on_disk(data_dir: Path) -> dict[str, set[str]]:
    """Every stored bundle, unpacked code folder and dependency set, and what is in tmp/."""
    return {"bundles": {p.stem for p in (data_dir / "bundles").iterdir()},
            "code": {p.name for p in (data_dir / "code").iterdir()},
            "deps": {p.name for p in (data_dir / "deps").iterdir()},
            "tmp": {p.name for p in (data_dir / "tmp").iterdir()}}


def live_code(lam) -> set[str]:
    """The code of $LATEST and of every version of every function, from the API."""
    out = set()
    for fn in lam.list_functions()["Functions"]:
        for v in lam.list_versions_by_function(FunctionName=fn["FunctionName"])["Versions"]:
            out.add(hex_of(v["CodeSha256"]))
    return out


def only_live(server, lam) -> bool:
    disk = on_disk(server.data_dir)
    live = live_code(lam)
    return disk["bundles"] == live and disk["code"] == live and disk["tmp"] == set()


def code_v(n: int) -> dict[str, str]:
    return {"handler.py": f"def handler(event, context):\n    return {{'v': {n}}}\n"}


def test_updates_and_deletes_leave_only_what_live_versions_use(server, lam):
    name = unique_name("collect")
    whl_name, whl = wheel("dayfly_collectdep", "1.0", "VALUE = 1\n")
    with_deps = {**code_v(1), "requirements.txt": f"./{whl_name}\n", whl_name: whl}
    v1 = hex_of(create(lam, name, with_deps, Publish=True)["CodeSha256"])
    assert len(on_disk(server.data_dir)["deps"]) == 1
    v2 = hex_of(lam.update_function_code(FunctionName=name, ZipFile=make_zip(code_v(2)))
                ["CodeSha256"])
    assert invoke(lam, name)[1] == {"v": 2}
    v3 = hex_of(lam.update_function_code(FunctionName=name, ZipFile=make_zip(code_v(3)))
                ["CodeSha256"])
    # v2 is gone (nothing refers to it); v1 stays (version 1), v3 is $LATEST. v2's instance
    # was drained by the update: its code goes once the instance has stopped
    assert wait_for(lambda: only_live(server, lam), timeout=30), on_disk(server.data_dir)
    disk = on_disk(server.data_dir)
    assert {v1, v3} <= disk["code"] and v2 not in disk["code"]
    assert len(disk["deps"]) == 1  # version 1 still uses its dependencies

    lam.delete_function(FunctionName=name, Qualifier="1")
    disk = on_disk(server.data_dir)
    assert v1 not in disk["code"] and v1 not in disk["bundles"]
    assert disk["deps"] == set()  # no version names that dependency set any more
    assert only_live(server, lam), disk

    lam.delete_function(FunctionName=name)
    disk = on_disk(server.data_dir)
    assert v3 not in disk["code"] and v3 not in disk["bundles"]
    assert only_live(server, lam), disk


def test_identical_code_is_kept_while_another_function_uses_it(server, lam):
    a, b = unique_name("same-a"), unique_name("same-b")
    zipped = make_zip(code_v(7))  # the same bytes twice (a zip made later has other dates)
    code = hex_of(create(lam, a, {}, Code={"ZipFile": zipped})["CodeSha256"])
    assert hex_of(create(lam, b, {}, Code={"ZipFile": zipped})["CodeSha256"]) == code
    lam.delete_function(FunctionName=a)
    assert code in on_disk(server.data_dir)["code"]
    assert invoke(lam, b)[1] == {"v": 7}
    lam.delete_function(FunctionName=b)
    assert code not in on_disk(server.data_dir)["code"]


def test_a_deploy_in_progress_keeps_its_code_through_collections(server, lam, gate):
    # the deploy has stored and unpacked its bundle but no version names it yet (its load
    # check waits at a gate); collections run meanwhile and must leave it alone
    blocked = make_zip({"dayfly.toml": gated(gate), "handler.py": f"""
import os, time
while not os.path.exists({str(gate / "open")!r}):
    time.sleep(0.01)
def handler(event, context):
    return "loaded"
"""})
    digest, name = hashlib.sha256(blocked).hexdigest(), unique_name("pending")
    result: dict = {}
    deploying = threading.Thread(target=lambda: result.update(lam.create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="handler.handler",
        Code={"ZipFile": blocked}, Timeout=60)))
    deploying.start()
    try:
        assert wait_for(lambda: (server.data_dir / "bundles" / f"{digest}.zip").exists(), 60)
        other = unique_name("other")
        gone = hex_of(create(lam, other, code_v(9))["CodeSha256"])
        lam.delete_function(FunctionName=other)  # a collection pass, finished when this returns
        disk = on_disk(server.data_dir)
        assert gone not in disk["code"]  # it did collect
        assert digest in disk["code"] and digest in disk["bundles"]  # but not the claimed one
    finally:
        (gate / "open").touch()
        deploying.join(60)
    assert hex_of(result["CodeSha256"]) == digest, result
    assert invoke(lam, name)[1] == "loaded"
    lam.delete_function(FunctionName=name)


def test_a_running_instance_keeps_its_code_until_it_is_done(server, lam, gate):
    name = unique_name("busy")
    handler = f"""
import os, time
def handler(event, context):
    while not os.path.exists({str(gate / "open")!r}):
        time.sleep(0.01)
    # the code folder is still there: read this very file
    return {{"own_source": len(open(__file__).read())}}
"""
    code = hex_of(create(lam, name, {"handler.py": handler, "dayfly.toml": gated(gate)},
                         Timeout=120)["CodeSha256"])
    result: dict = {}
    call = threading.Thread(target=lambda: result.update(invoke(lam, name)[1]))
    call.start()
    try:
        busy = wait_for(lambda: any(i["state"] == "busy" for i in httpx.get(
            f"{server.url}/dayfly/v1/functions/{name}/instances", timeout=10).json()["instances"]),
                        60)
        assert busy
        lam.delete_function(FunctionName=name)
        disk = on_disk(server.data_dir)
        assert code in disk["code"] and code not in live_code(lam)  # deleted, still in use
    finally:
        (gate / "open").touch()
        call.join(120)
    assert result.get("own_source", 0) > 0, result
    # drained now: the next collection pass removes it
    assert wait_for(lambda: code not in on_disk(server.data_dir)["code"], timeout=30)


def test_code_over_the_unzipped_limit_is_refused_and_leaves_nothing(server, lam):
    before = on_disk(server.data_dir)
    for bomb in (zeros_bomb(MAX_UNZIPPED + (1 << 20)),  # one entry, ~260 KB compressed
                 zeros_bomb(MAX_UNZIPPED + (2 << 20), parts=2),  # two, each under the limit
                 zeros_bomb(MAX_UNZIPPED + (2 << 20), parts=2, declared=1000)):  # lying sizes
        assert len(bomb) < 1_000_000
        name = unique_name("bomb")
        with pytest.raises(ClientError) as exc:
            lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                                Handler="handler.handler", Code={"ZipFile": bomb})
        err = exc.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
        assert err["Error"]["Code"] == "InvalidParameterValueException"
        message = err["Error"]["Message"]
        assert TOO_BIG in message or "holds" in message or "CRC-32" in message, message
        assert str(server.data_dir) not in message
        assert on_disk(server.data_dir) == before
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def zeros_wheel(name: str, size: int) -> tuple[str, bytes]:
    """A wheel whose package holds `size` bytes of zeros (deflated: about 1 KB per MB)."""
    dist, chunk = f"{name}-1.0.dist-info", bytes(1 << 20)
    digest, left = hashlib.sha256(), size
    while left > 0:
        digest.update(chunk[:min(left, len(chunk))])
        left -= len(chunk)
    small = {f"{name}/__init__.py": b"",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dayfly-tests\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}"
              for path, data in small.items()]
    record += [f"{name}/blob.bin,sha256={_b64(digest.digest())},{size}", f"{dist}/RECORD,,"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in small.items():
            zf.writestr(path, data)
        with zf.open(f"{name}/blob.bin", "w") as f:
            left = size
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return f"{name}-1.0-py3-none-any.whl", buf.getvalue()


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_code_and_dependencies_together_over_the_limit_are_refused(server, lam):
    # each part alone is under the limit; Lambda counts layers with the code, dayfly the
    # dependencies requirements.txt installs
    before = on_disk(server.data_dir)
    whl_name, whl = zeros_wheel("dayfly_bigdep", 200 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
        zf.writestr("requirements.txt", f"./{whl_name}\n")
        zf.writestr(whl_name, whl)
        zf.writestr("data.bin", bytes(60 << 20))
    name = unique_name("heavy")
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                            Handler="handler.handler", Code={"ZipFile": buf.getvalue()})
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    assert TOO_BIG in err["Error"]["Message"]
    assert str(server.data_dir) not in err["Error"]["Message"]
    # what the refused deploy stored is unreferenced: collected on the next pass
    assert wait_for(lambda: on_disk(server.data_dir) == before, timeout=30), \
        on_disk(server.data_dir)


def test_a_small_zip_that_unpacks_large_is_removed_with_its_function(server, lam):
    # the case: a ~245 KB zip that unpacks to 240 MiB, then DeleteFunction
    name = unique_name("large")
    bomb = zeros_bomb(240 << 20)
    resp = lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                               Handler="handler.handler", Code={"ZipFile": bomb})
    code = hex_of(resp["CodeSha256"])
    assert (server.data_dir / "code" / code / "zeros0.bin").stat().st_size == 240 << 20
    lam.delete_function(FunctionName=name)
    assert code not in on_disk(server.data_dir)["code"]
    assert only_live(server, lam)


def test_leftovers_of_a_killed_deploy_are_collected_at_start(tmp_path, gate):
    data = tmp_path / "data"
    srv = start_server(data)  # the default grace: only the start pass may collect here
    try:
        lam = srv.lambda_client()
        keep = hex_of(create(lam, "keep", code_v(1))["CodeSha256"])
        # a deploy held at its load check (the module waits for a gate that never opens)
        blocked = make_zip({"dayfly.toml": gated(gate), "handler.py": f"""
import os, time
while not os.path.exists({str(gate / "open")!r}):
    time.sleep(0.01)
def handler(event, context):
    return 1
"""})
        victim = hashlib.sha256(blocked).hexdigest()
        deploying = threading.Thread(target=_quiet, args=(lambda: lam.create_function(
            FunctionName="victim", Runtime="python3.11", Role=ROLE, Handler="handler.handler",
            Code={"ZipFile": blocked}, Timeout=60),))
        deploying.start()
        # stored and unpacked, no version yet: the deploy is mid-way
        assert wait_for(lambda: (data / "bundles" / f"{victim}.zip").exists(), timeout=60)
        children = children_of(srv.proc.pid)
    finally:
        stop_server(srv, signal.SIGKILL)
    deploying.join(60)
    try:
        assert wait_for(lambda: not _alive(children), timeout=30), _alive(children)
    finally:
        for pid in _alive(children):
            os.kill(pid, signal.SIGKILL)
    left = on_disk(data)
    assert victim in left["code"] and victim in left["bundles"]  # what the kill left

    srv = start_server(data)
    try:
        disk = on_disk(data)
        assert disk["code"] == {keep} and disk["bundles"] == {keep}, disk
        assert disk["tmp"] == set() and disk["deps"] == set(), disk
        assert invoke(srv.lambda_client(), "keep")[1] == {"v": 1}
        with pytest.raises(ClientError):
            srv.lambda_client().get_function(FunctionName="victim")
    finally:
        stop_server(srv)


def gated(gate: Path) -> str:
    """dayfly.toml that shows the function the gate folder (read-only)."""
    return f"files = [{str(gate)!r}]\n".replace("'", '"')


def _quiet(call) -> None:
    """The call dies with the server: its connection error is expected."""
    with contextlib.suppress(Exception):
        call()


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(pid)
    return out

