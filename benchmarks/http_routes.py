"""HTTP routes and web apps against their floor and their peer (issue 15, point 7), one run:

1. a route to a no-op handler (`GET /noop`) over the raw invoke of the same function
   (`POST /2015-03-31/functions/NAME/invocations`): wrk, c=1, short runs interleaved in
   pairs (drift on a shared machine hits both runs of a pair alike); the overhead is the
   median over pairs of (route p50 - invoke p50);
2. a FastAPI app deployed as a function (`kind = "asgi"`, at its function URL) against the same
   app file, with the same FastAPI, under uvicorn with 1 worker (uvloop, httptools): wrk at
   c=1 (p50) and c=32 (req/s), rounds interleaved, after a c=32 warm-up that runs until the
   function has stopped starting instances. The function has `memory = 1769`: Lambda's (and
   dayfly's) CPU share for one vCPU, what uvicorn's one worker may use; at the default 128 MB
   an instance gets a quarter of a core. CPU seconds per request of each server's process
   tree (dayfly: node, zygotes, instances) are read from /proc over the c=32 runs;
3. the first byte of a streamed response: the handler notes `time.time()` in the piece it
   yields, the client notes `time.time()` when the piece arrives (same host clock); a generator
   on a route and a FastAPI StreamingResponse at a function URL, on every tier asked for.

    cd benchmarks && python http_routes.py [--tier linux] [--stream-tiers process,linux]
                                           [--seconds 5] [--rounds 3] [--samples 200]
                                           [--concurrency 32]

`--concurrency N` deploys the FastAPI app with `concurrency = N` (one instance serves up to N
requests at once on its event loop, as uvicorn's one worker does); the default, 1, is Lambda's
one request per instance.

One `dayfly up` serves everything (each function names its tier in dayfly.toml); wrk, the
servers and this script share the machine's cores; the load average is printed. Needs the test
extras (`pip install -e '.[test]'`): FastAPI is vendored into the bundle by tests/http's
webapp_helpers, and uvicorn runs from this same environment, so both serve the same files.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from harness.dayfly import NOOP_SOURCE, dayfly_command, invoke_path, lambda_client, list_instances
from harness.measure import LOOPBACK, REPO_DIR, THROUGHPUT_RUN, p50_p99
from harness.peers import UVICORN_FLAGS
from harness.procs import connection, expect, free_port, process_tree, request_once, running
from harness.venvs import local_version
from harness.wrk import LUA_SCRIPT, WrkResult, require_wrk, run_wrk, wrk_version
from run import cpu_model, git_revision

sys.path[:0] = [str(REPO_DIR / "tests"), str(REPO_DIR / "tests" / "http")]
from webapp_helpers import FASTAPI, vendored  # noqa: E402  (the tests' vendoring of FastAPI)

LATENCY = (1, 1)  # wrk threads, connections
ONE_VCPU_MB = 1769
WARMUPS = 20  # c=32 warm-up runs of 2 s at most
TICK = os.sysconf("SC_CLK_TCK")
FASTAPI_APP = '''\
import asyncio
import time

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()


@app.get("/hello")
async def hello():
    return {}


@app.get("/stream")
async def stream():
    async def pieces():
        yield f"{time.time()!r};"
        await asyncio.sleep(0.005)
        yield "end"
    return StreamingResponse(pieces(), media_type="text/plain")
'''
GENERATOR = '''\
import time


def handler(event, context):
    yield {"statusCode": 200, "headers": {"content-type": "text/plain"}}
    yield f"{time.time()!r};"
    time.sleep(0.005)
    yield "end"
'''


def bundle(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def deploy(port: int, name: str, files: dict[str, str | bytes]) -> None:
    """Deploy a bundle (its dayfly.toml included) over `POST /dayfly/v1/functions/NAME/deploy`."""
    with connection(port, timeout=600) as conn:
        conn.request("POST", f"/dayfly/v1/functions/{name}/deploy", body=bundle(files),
                     headers={"content-type": "application/zip"})
        reply = conn.getresponse()
        lines = [json.loads(x) for x in reply.read().splitlines() if x.strip()]
    if reply.status != 200 or "function" not in lines[-1]:
        raise RuntimeError(f"deploy of {name} failed: {lines[-1:]}")


def function_url(port: int, name: str) -> str:
    """Create NAME's function URL (AuthType NONE); return its path-based address."""
    lambda_client(port).create_function_url_config(FunctionName=name, AuthType="NONE")
    return f"/url/{name}"


def cpu_seconds(root: int) -> tuple[float, float]:
    """User + system CPU seconds of ROOT itself and of its whole live process tree."""
    own = total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # it exited meanwhile
            continue
        used = int(fields[11]) + int(fields[12])
        total += used
        own += used if pid == root else 0
    return own / TICK, total / TICK


class Runs:
    """wrk runs of one case, each with the CPU its server's process tree used meanwhile."""

    def __init__(self, url: str, shape: tuple[int, int], seconds: float, root: int,
                 post: bool = False) -> None:
        self.url, self.shape, self.seconds, self.root = url, shape, seconds, root
        self.script = LUA_SCRIPT if post else None
        self.results: list[WrkResult] = []
        self.cpu_per_request: list[tuple[float, float]] = []  # us: the server, its children

    def run(self) -> None:
        own, tree = cpu_seconds(self.root)
        result = run_wrk(self.url, *self.shape, self.seconds, self.script)
        own_after, tree_after = cpu_seconds(self.root)
        if result.errors or not result.requests:
            raise RuntimeError(f"{self.url} at c={self.shape[1]}: {result}")
        self.results.append(result)
        own, rest = own_after - own, tree_after - tree - (own_after - own)
        self.cpu_per_request.append((own / result.requests * 1e6, rest / result.requests * 1e6))

    def median(self, field: str) -> float:
        return statistics.median(getattr(r, field) for r in self.results)


def interleaved(rounds: int, cases: dict[str, Runs]) -> dict[str, Runs]:
    """Every case once per round, in turn, so drift on the machine hits all of them alike."""
    for _ in range(rounds):
        for case in cases.values():
            case.run()
    return cases


def warm(port: int, name: str, url: str) -> int:
    """Drive NAME at c=32 until it has an instance per connection or two runs in a row start
    none: the pool grows a few instances a run, and a cold start (importing FastAPI) inside
    the timed runs would be counted against every request."""
    counts: list[int] = []
    while len(counts) < WARMUPS:
        run_wrk(url, *THROUGHPUT_RUN, 2, None)
        with connection(port) as conn:
            counts.append(len(list_instances(conn, name)))
        if counts[-1] >= THROUGHPUT_RUN[1] or counts[-3:] == [counts[-1]] * 3:
            break
    return counts[-1]


def first_byte_ms(port: int, path: str, samples: int) -> list[float]:
    """Milliseconds from the handler's yield (its time.time() in the piece) to the piece's
    arrival here, over one kept-alive connection."""
    out = []
    with connection(port) as conn:
        for _ in range(samples + 5):  # the first few warm the instance
            conn.request("GET", path)
            reply = conn.getresponse()
            first = reply.read1()
            arrived = time.time()
            if reply.status != 200 or b";" not in first:
                raise RuntimeError(f"GET {path}: {reply.status} {first[:200]!r}")
            rest = reply.read()
            if rest != b"end":
                raise RuntimeError(f"GET {path}: the stream ended with {rest[:200]!r}")
            out.append((arrived - float(first.split(b";", 1)[0])) * 1000)
    return out[5:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="linux", help="tier of the load runs (1 and 2)")
    parser.add_argument("--stream-tiers", default="process,linux")
    parser.add_argument("--seconds", type=float, default=5, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--route-rounds", type=int, default=10,
                        help="rounds of the route/invoke pair, each run --route-seconds")
    parser.add_argument("--route-seconds", type=float, default=2)
    parser.add_argument("--samples", type=int, default=200, help="streamed responses per case")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="the FastAPI app's `concurrency` (requests per instance at once)")
    args = parser.parse_args()
    require_wrk()
    stream_tiers = [t for t in args.stream_tiers.split(",") if t]
    loads = [os.getloadavg()[0]]
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    prefix, env = dayfly_command()
    port, peer_port = free_port(), free_port()
    base, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    web = f"web-{args.tier}"
    with tempfile.TemporaryDirectory(prefix="dayfly-http-routes-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        (work / "peer").mkdir()
        (work / "peer" / "app.py").write_text(FASTAPI_APP)
        argv = [*prefix, "up", *LOOPBACK, str(port), "--data-dir", str(work / "data"),
                "--isolation", args.tier, "--allow-weak-isolation"]
        peer_argv = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir",
                     str(work / "peer"), *UVICORN_FLAGS, *LOOPBACK, str(peer_port)]
        with running(argv, port, "/healthz", work / "node.log", env=env,
                     cwd=work / "data") as node, \
                running(peer_argv, peer_port, "/hello", work / "peer.log",
                        cwd=work / "peer") as uvicorn:
            deploy(port, "noop", {"handler.py": NOOP_SOURCE, "dayfly.toml":
                                  f'isolation = "{args.tier}"\n[http]\nroutes = ["GET /noop"]\n'})
            vendor = vendored(*FASTAPI)
            for t in {args.tier, *stream_tiers}:
                deploy(port, f"web-{t}", {"app.py": FASTAPI_APP, **vendor, "dayfly.toml":
                                          f'handler = "app:app"\nkind = "asgi"\n'
                                          f'isolation = "{t}"\nmemory = {ONE_VCPU_MB}\n'
                                          f'concurrency = {args.concurrency}\n'})
                function_url(port, f"web-{t}")
            for t in stream_tiers:
                deploy(port, f"gen-{t}", {"handler.py": GENERATOR, "dayfly.toml":
                                          f'isolation = "{t}"\n[http]\nroutes = ["GET /gen-{t}"]\n'})
            for p, path in ((port, "/noop"), (port, f"/url/{web}/hello"), (peer_port, "/hello")):
                expect(request_once(p, "GET", path), 200, f"GET {path}")  # before it is timed
            print(f"load average {loads[0]:.2f}; measuring ...", file=sys.stderr)
            s = args.seconds
            rs = args.route_seconds
            route = interleaved(args.route_rounds, {
                "invoke": Runs(base + invoke_path("noop"), LATENCY, rs, node.pid, post=True),
                "route": Runs(f"{base}/noop", LATENCY, rs, node.pid)})
            loads.append(os.getloadavg()[0])
            app_url = f"{base}/url/{web}/hello"
            instances = warm(port, web, app_url)
            apps = interleaved(args.rounds, {
                "dayfly c=1": Runs(app_url, LATENCY, s, node.pid),
                "uvicorn c=1": Runs(f"{peer}/hello", LATENCY, s, uvicorn.pid),
                "dayfly c=32": Runs(app_url, THROUGHPUT_RUN, s, node.pid),
                "uvicorn c=32": Runs(f"{peer}/hello", THROUGHPUT_RUN, s, uvicorn.pid)})
            loads.append(os.getloadavg()[0])
            streams = {}
            for t in stream_tiers:
                streams[f"generator on a route, {t} tier"] = first_byte_ms(
                    port, f"/gen-{t}", args.samples)
                streams[f"FastAPI StreamingResponse at its URL, {t} tier"] = first_byte_ms(
                    port, f"/url/web-{t}/stream", args.samples)
    loads.append(os.getloadavg()[0])
    print(report(args, started, loads, instances, route, apps, streams))
    return 0


def report(args: argparse.Namespace, started: str, loads: list[float], instances: int,
           route: dict[str, Runs], apps: dict[str, Runs], streams: dict[str, list[float]]) -> str:
    """The table, then every round's figures."""
    inv, rt = route["invoke"].median("p50_ms"), route["route"].median("p50_ms")
    pairs = sorted(r.p50_ms - i.p50_ms for r, i in
                   zip(route["route"].results, route["invoke"].results, strict=True))
    overhead = statistics.median(pairs)
    d1, u1 = apps["dayfly c=1"].median("p50_ms"), apps["uvicorn c=1"].median("p50_ms")
    d32 = apps["dayfly c=32"].median("requests_per_sec")
    u32 = apps["uvicorn c=32"].median("requests_per_sec")
    dgw, dinst = (statistics.median(c[i] for c in apps["dayfly c=32"].cpu_per_request)
                  for i in (0, 1))
    d1gw, d1inst = (statistics.median(c[i] for c in apps["dayfly c=1"].cpu_per_request)
                    for i in (0, 1))
    ucpu = statistics.median(c[0] for c in apps["uvicorn c=32"].cpu_per_request)
    u1cpu = statistics.median(c[0] for c in apps["uvicorn c=1"].cpu_per_request)
    lines = [
        f"date: {started}; dayfly at {git_revision()}; wrk {wrk_version()}; FastAPI "
        f"{local_version('fastapi')}, uvicorn {local_version('uvicorn')} (1 worker, uvloop, "
        "httptools)",
        f"machine: nproc {os.cpu_count()} ({cpu_model()}); load average (1 min) "
        + " / ".join(f"{x:.2f}" for x in loads) + " (start / after 1 / after 2 / end)",
        f"command: `{' '.join(['python', *sys.argv])}` (route/invoke: {args.route_rounds} "
        f"pairs of {args.route_seconds:g} s wrk runs; FastAPI: {args.rounds} interleaved rounds "
        f"of {args.seconds:g} s wrk runs; c=1 is wrk -t1 -c1, c=32 is wrk -t2 -c32; the app has "
        f"memory = {ONE_VCPU_MB} (1 vCPU), concurrency = {args.concurrency} and {instances} "
        "warm instances at c=32)",
        "",
        "| measurement | dayfly | floor / peer | overhead or ratio | target | status |",
        "|---|---|---|---|---|---|",
        f"| route to a no-op ({args.tier} tier), c=1 p50 | {rt:.3f} ms | raw invoke {inv:.3f} ms"
        f" | {overhead:+.3f} ms (pairs {pairs[0]:+.3f} to {pairs[-1]:+.3f}) | ≤ 0.05 ms | "
        f"{_status(overhead <= 0.05)} |",
        f"| FastAPI app ({args.tier} tier, function URL), c=32 | {d32:,.0f} req/s | uvicorn "
        f"{u32:,.0f} req/s | {d32 / u32:.2f}x | ≥ 0.7x | {_status(d32 / u32 >= 0.7)} |",
        f"| FastAPI app, c=1 p50 | {d1:.3f} ms | uvicorn {u1:.3f} ms | {d1 - u1:+.3f} ms | "
        f"≤ 0.2 ms | {_status(d1 - u1 <= 0.2)} |",
        f"| FastAPI app, CPU per request at c=1: gateway + instances | {d1gw:,.0f} + "
        f"{d1inst:,.0f} us | uvicorn {u1cpu:,.0f} us | {(d1gw + d1inst) / u1cpu:.1f}x | | |",
        f"| FastAPI app, CPU per request at c=32: gateway + instances | {dgw:,.0f} + "
        f"{dinst:,.0f} us | uvicorn {ucpu:,.0f} us | {(dgw + dinst) / ucpu:.1f}x | | |",
    ]
    for name, samples in streams.items():
        p50, p99 = p50_p99(samples)
        lines.append(f"| first byte after the yield: {name} (n={len(samples)}) | p50 {p50:.3f} "
                     f"/ p99 {p99:.3f} ms | | | ≤ 2 ms | p50 {_status(p50 <= 2)}, p99 "
                     f"{_status(p99 <= 2)} |")
    lines += ["", "every round (p50 ms at c=1, req/s at c=32; CPU us per request: the server "
              "process + its children):"]
    for k, case in {**route, **apps}.items():
        field = "requests_per_sec" if "32" in k else "p50_ms"
        figures = [f"{getattr(r, field):,.0f}" if "32" in k else f"{r.p50_ms:.3f}"
                   for r in case.results]
        cpu = " ".join(f"{own:,.0f}+{rest:,.0f}" for own, rest in case.cpu_per_request)
        lines.append(f"  {k:<13} {'  '.join(figures)}   (CPU {cpu})")
    return "\n".join(lines)


def _status(ok: bool) -> str:
    return "met" if ok else "missed"


if __name__ == "__main__":
    raise SystemExit(main())
