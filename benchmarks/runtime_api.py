"""Cold and warm invokes of a native function against the Runtime API ones, in the same run.

    python benchmarks/runtime_api.py [--isolation linux] [--cold 20] [--warm 200]

A `dayfly up` of its own and four functions that return at once: a native Python handler, and
three `provided` ones, whose instance serves the Lambda Runtime API to an exec'd bootstrap:
awslambdaric driving the same handler, a bash script and a compiled C program (the runtimes of
tests/e2e/test_runtime_api.py). Rounds are interleaved (each round: every function once cold,
after a scale to zero, then `warm / rounds` warm invokes each) on one kept-alive connection.
Prints p50 / p90 of each, and the cold starts' fork and init split from the records.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from harness.dayfly import dayfly_command, invoke, lambda_client, scale_to_zero
from harness.procs import connection, free_port, request, running

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "e2e"), str(TESTS / "http")]
from test_runtime_api import C_RUNTIME, RIC_BOOTSTRAP, SHELL_BOOTSTRAP  # noqa: E402
from webapp_helpers import vendored  # noqa: E402

HANDLER = "def handler(event, context):\n    return {}\n"


def bundle(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name == "bootstrap" else 0o100644) << 16
            zf.writestr(info, content)
    return buf.getvalue()


def functions(tmp: Path) -> dict[str, tuple[str, str, dict]]:
    """name -> (runtime, handler, files)."""
    src, binary = tmp / "runtime.c", tmp / "bootstrap"
    src.write_text(C_RUNTIME)
    subprocess.run([shutil.which("gcc") or "gcc", "-O2", "-o", str(binary), str(src)], check=True)
    return {
        "native": ("python3.11", "app.handler", {"app.py": HANDLER}),
        "awslambdaric": ("provided.al2023", "app.handler",
                         {"app.py": HANDLER, "bootstrap": RIC_BOOTSTRAP,
                          **vendored("awslambdaric")}),
        "shell": ("provided.al2023", "function.handler", {"bootstrap": SHELL_BOOTSTRAP}),
        "c": ("provided.al2023", "function.handler", {"bootstrap": binary.read_bytes()}),
    }


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isolation", default="linux")
    ap.add_argument("--cold", type=int, default=20, help="cold starts per function (rounds)")
    ap.add_argument("--warm", type=int, default=200, help="warm invokes per function")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-rapi-") as tmp:
        prefix, env = dayfly_command()
        argv = [*prefix, "up", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                f"{tmp}/data", "--isolation", args.isolation]
        fns = functions(Path(tmp))
        with running(argv, port, "/healthz", Path(tmp) / "server.log", env=env, cwd=Path(tmp)):
            lam = lambda_client(port)
            for name, (runtime, handler, files) in fns.items():
                lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler,
                                    Role="arn:aws:iam::000000000000:role/x",
                                    Code={"ZipFile": bundle(files)})
            cold: dict[str, list[float]] = {n: [] for n in fns}
            warm: dict[str, list[float]] = {n: [] for n in fns}
            per_round = max(1, args.warm // args.cold)
            with connection(port, timeout=60) as conn:
                for name in fns:  # untimed: the zygotes start, pages are faulted in
                    invoke(conn, name)
                for _ in range(args.cold):
                    for name in fns:
                        scale_to_zero(conn, name)
                        t0 = time.perf_counter()
                        invoke(conn, name)
                        cold[name].append((time.perf_counter() - t0) * 1000)
                        for _ in range(per_round):
                            t0 = time.perf_counter()
                            invoke(conn, name)
                            warm[name].append((time.perf_counter() - t0) * 1000)
                time.sleep(0.5)  # records are written off the request path
                split = {}
                for name in fns:
                    reply = request(conn, "GET", f"/dayfly/v1/functions/{name}/invocations"
                                                 f"?limit={args.cold + args.warm + 1}")
                    rows = [r for r in json.loads(reply.body)["invocations"] if r.get("cold")]
                    split[name] = (statistics.median(r["fork_ms"] for r in rows),
                                   statistics.median(r["init_ms"] for r in rows))
    print(f"{args.isolation}: {args.cold} cold and {per_round * args.cold} warm invokes each, "
          f"interleaved; load average {os.getloadavg()[0]:.2f}")
    print(f"{'function':<14}{'cold p50':>10}{'cold p90':>10}{'fork p50':>10}{'init p50':>10}"
          f"{'warm p50':>10}{'warm p90':>10}  (ms)")
    for name in fns:
        print(f"{name:<14}{statistics.median(cold[name]):>10.2f}{pct(cold[name], 0.9):>10.2f}"
              f"{split[name][0]:>10.2f}{split[name][1]:>10.2f}"
              f"{statistics.median(warm[name]):>10.2f}{pct(warm[name], 0.9):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
