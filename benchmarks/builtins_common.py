"""What the builtins' benchmarks share: a `dayfly up` of their own, S3 clients, deploys by name,
invocation records, and the builtins' in-sandbox modules importable in this process."""

from __future__ import annotations

import configparser
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from harness.procs import start_platform

BUILTINS = Path(__file__).resolve().parents[1] / "dayfly" / "builtins"


def in_process(folder: str) -> None:
    """Make a builtin's modules (and `_lib`) importable here, as its bundle's root does."""
    for p in (str(BUILTINS), str(BUILTINS / folder)):
        if p not in sys.path:
            sys.path.insert(0, p)


def start(data: Path, tier: str = "") -> tuple[subprocess.Popen, str]:
    # a process-tier builtin needs a node that allows the weak tier: choosing it is that
    return start_platform(data, "process" if tier == "process" else None)


def credentials(data: Path) -> tuple[str, str]:
    cp = configparser.ConfigParser()
    cp.read(data / "credentials")
    return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]


def boto_s3(url: str, data: Path):
    import boto3
    from botocore.config import Config

    key, secret = credentials(data)
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}))


def deploy(url: str, builtin: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    with httpx.stream("POST", f"{url}/dayfly/v1/builtins/{builtin}/deploy",
                      json={"name": name, "config": config}, timeout=600) as r:
        last = json.loads([x for x in r.iter_lines() if x.strip()][-1])
    if "function" not in last:
        raise SystemExit(f"deploy of builtin:{builtin} failed: {last}")
    return last


def trigger(url: str, function: str, bucket: str) -> None:
    r = httpx.post(f"{url}/dayfly/v1/bucket-triggers", json={"function": function,
                                                              "bucket": bucket})
    r.raise_for_status()


def records(url: str, function: str, n: int, trigger: str | None = None, timeout: float = 120,
            poll: float = 0.2) -> list[dict[str, Any]]:
    """The function's invocation records (of one trigger kind, if given), oldest first, once
    there are at least n of them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(f"{url}/dayfly/v1/functions/{function}/invocations",
                         params={"limit": 1000}).json()["invocations"]
        rows = [r for r in rows if trigger is None or r["trigger"] == trigger]
        if len(rows) >= n or time.monotonic() > deadline:
            return list(reversed(rows))
        time.sleep(poll)


def wait_record(url: str, function: str, after: float, first_wait: float = 0.25,
                timeout: float = 120) -> dict[str, Any]:
    """The first invocation record that started after `after` (epoch seconds); polls the
    newest few records only, so the waiting costs the machine next to nothing."""
    time.sleep(first_wait)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = httpx.get(f"{url}/dayfly/v1/functions/{function}/invocations",
                         params={"limit": 3}).json()["invocations"]
        done = [r for r in rows if r["start"] >= after]
        if done:
            return done[-1]
        time.sleep(0.1)
    raise SystemExit(f"{function} was not invoked within {timeout} s")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")
