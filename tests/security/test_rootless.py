"""The linux tier without root: unprivileged user namespaces instead of dedicated uids.

These tests need root only to make a real unprivileged process (nobody, no capabilities)
that can run this interpreter (see unprivileged.py); everything under test runs as that
user. The escape battery, the spare tests and the sandbox contract run again, unchanged,
over the rootless linux tier, and a whole `dayfly up` serves a function from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from conftest import make_zip, start_server, stop_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NOBODY = 65534


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create the unprivileged test user's environment"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    return None


pytestmark = pytest.mark.skipif(_can_run() is not None, reason=str(_can_run()))

# runs this interpreter as nobody, in a private mount namespace (unprivileged.py)
UNPRIVILEGED = ("unshare", "--mount", "--propagation", "private", sys.executable,
                str(HERE / "unprivileged.py"))


def _battery(tests: list[str], select: str, inside: list[Path] = (), **env: str) -> int:
    """Run tests as nobody, started in the cgroups `inside` (the way systemd starts a service
    in its delegated cgroup); return how many passed (none may fail or skip)."""
    def join() -> None:
        for d in inside:
            (d / "cgroup.procs").write_text("0")

    out = subprocess.run(
        [*UNPRIVILEGED, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *tests, "-k", select, "-W", "error::pytest.PytestUnraisableExceptionWarning"],
        cwd=REPO, env={**os.environ, "DAYFLY_STRICT": "1", **env}, capture_output=True,
        text=True, timeout=600, preexec_fn=join if inside else None)
    tail = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    summary = out.stdout.strip().splitlines()[-1]
    assert "skipped" not in summary and "failed" not in summary, summary
    return int(summary.split(" passed")[0].split()[-1])


@pytest.mark.timeout(600)  # a whole battery in a pytest of its own (69 s quiet, 440 s at load 13)
def test_security_battery_and_contract_pass_rootless():
    passed = _battery(["tests/security/test_escape.py", "tests/security/test_spares.py",
                       "tests/contract"], "linux")
    assert passed >= 50


@pytest.fixture
def delegated_cgroup():
    """A cgroup handed to nobody, the way an administrator (or systemd's Delegate=yes) would."""
    from dayfly.sandbox.linux import cgroups

    v = cgroups.version()
    if v is None:
        pytest.skip("no usable cgroup hierarchy")
    name = f"dayfly-delegated-{os.getpid()}"
    dirs = ([cgroups.ROOT / name] if v == 2 else
            [cgroups.ROOT / c / name for c in cgroups.V1_CONTROLLERS])
    for d in dirs:
        d.mkdir()
        os.chown(d, NOBODY, NOBODY)
        for f in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads", "tasks"):
            if (d / f).exists():
                os.chown(d / f, NOBODY, NOBODY)
    if v == 2:
        (cgroups.ROOT / "cgroup.subtree_control").write_text("+memory +pids +cpu")
    try:
        yield name, dirs
    finally:
        for d in dirs:  # dayfly removed its own slots; what is left is ours
            for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
                if sub != d:
                    sub.rmdir()
            d.rmdir()


def test_delegated_cgroup_gives_rootless_instances_cgroup_limits(delegated_cgroup):
    # the same memory, fork-bomb and cgroup-membership checks, now enforced by cgroups; the
    # platform starts inside the delegated cgroup (on v2 it must: see CgroupPool)
    name, dirs = delegated_cgroup
    passed = _battery(["tests/security/test_escape.py"],
                      "linux and (memory or fork_bomb or own_cgroup or capabilities)",
                      inside=dirs, DAYFLY_CGROUP_PARENT=name)
    assert passed == 4


def test_delegated_cgroup_must_hold_the_platform_on_v2(delegated_cgroup):
    # v2 moves a process only with write access to the common ancestor of its old and new
    # cgroups: a platform outside the delegated subtree cannot place instances, and says why
    # (the tier then falls back to rlimits); v1 has no such rule
    from dayfly.sandbox.linux import cgroups

    name, dirs = delegated_cgroup
    probe = [*UNPRIVILEGED, sys.executable, "-c",
             "import json; from dayfly.sandbox.linux.cgroups import CgroupPool; "
             f"print(json.dumps(CgroupPool.probe({name!r})))"]

    def run(inside: list[Path]) -> list:
        out = subprocess.run(probe, cwd=REPO, capture_output=True, text=True, timeout=60,
                             preexec_fn=(lambda: [(d / "cgroup.procs").write_text("0")
                                                  for d in inside]) if inside else None)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert run(dirs) == [True, f"cgroup v{cgroups.version()} (delegated: {name})"]
    ok, why = run([])
    if cgroups.version() == 2:
        assert not ok and "outside" in why and "Delegate=yes" in why, why
    else:
        assert ok, why


@pytest.fixture
def rootless_server():
    home = Path(tempfile.mkdtemp(prefix="dayfly-rootless-"))
    os.chown(home, NOBODY, NOBODY)
    srv = start_server(home / "data", prefix=UNPRIVILEGED)
    try:
        yield srv
    finally:
        stop_server(srv)
        shutil.rmtree(home, ignore_errors=True)


PROBE = '''
import os, socket
def handler(event, context):
    return {"uid": os.getuid(), "pid": os.getpid(), "host": socket.gethostname(),
            "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            "shadow": os.path.exists("/etc/shadow"), "root": sorted(os.listdir("/"))}
'''


def test_dayfly_up_serves_isolated_functions_without_root(rootless_server):
    srv = rootless_server
    with open(f"/proc/{srv.proc.pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(NOBODY)] * 4  # the platform itself is not root
    doctor = httpx.get(f"{srv.url}/dayfly/v1/doctor", timeout=10).json()
    linux = next(t for t in doctor["tiers"] if t["name"] == "linux")
    assert doctor["default"] == "linux" and linux["available"] and "rootless" in linux["why"]
    assert "running rootless" in srv.log()  # said loudly at start

    lam = srv.lambda_client()
    cfg = lam.create_function(FunctionName="probe", Runtime="python3.11", Role="r",
                              Handler="handler.handler",
                              Code={"ZipFile": make_zip({"handler.py": PROBE})})
    assert cfg["FunctionName"] == "probe"
    out = json.loads(lam.invoke(FunctionName="probe", Payload=b"{}")["Payload"].read())
    assert out["uid"] == 1000 and out["pid"] == 1 and out["host"] == "dayfly"
    assert out["procs"] == ["1"] and out["shadow"] is False
    # the minimal root: the runtime's folders only ("root" holds this interpreter, pyenv's)
    assert set(out["root"]) <= {"bin", "dev", "etc", "lib", "lib64", "opt", "proc", "tmp",
                                "usr", "var", "root"}, out["root"]
