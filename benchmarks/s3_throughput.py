"""The S3 endpoint's throughput against the same bytes written to and read from local files
with Python, in the same run, on the same disk (issue 17).

- 4 KiB objects, PUT and GET in requests/s: wrk (C, not Python) sending a presigned URL
  (UNSIGNED-PAYLOAD) over --connections connections for --seconds each; PUTs replace one key,
  so each is a new blob, fsynced and committed, and the old one removed. Files: write + fsync
  + rename of 4 KiB files, one thread; reads of those files.
- 256 MiB objects, PUT and GET in MiB/s: curl uploading a file to a presigned URL
  (UNSIGNED-PAYLOAD: the server hashes MD5 only) and downloading to /dev/null, --runs each
  (best). The same PUT as boto3 sends it by default over http (put_object: the payload's
  SHA-256 signed, x-amz-checksum-crc32 in a header, so the server hashes MD5, SHA-256 and
  CRC32) and as it sends it over https (aws-chunked, CRC32 trailer, unsigned: MD5 and CRC32),
  end to end (boto3 hashes the body itself before sending it). Files: Python writing the same
  bytes (1 MiB writes) + fsync; reading them back in 1 MiB reads (page cache, like the
  server's GET).
- ListObjectsV2 over --keys keys, 1,000 a page: boto3's paginator (parsing included) and raw
  HTTP (httpx, presigned page URLs; the server's share). The keys are rows copied from one
  PUT object, inserted in one transaction into the node's SQLite file before the listing
  (100,000 PUTs would take minutes and measure PUT again).

Usage: python benchmarks/s3_throughput.py [--seconds 10] [--connections 16] [--runs 3]
       [--large-mib 256] [--keys 100000] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import hashlib
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import botocore.httpchecksum
import httpx
from botocore.config import Config
from harness.procs import start_platform

MiB = 1024 * 1024
PUT_LUA = """wrk.method = "PUT"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def client(url: str, data: Path):
    cp = configparser.ConfigParser()
    cp.read(data / "credentials")
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=cp["default"]["aws_access_key_id"],
                        aws_secret_access_key=cp["default"]["aws_secret_access_key"],
                        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> float:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s"]
    argv += ["-s", str(script)] if script else []
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise SystemExit(f"wrk saw {bad[1]} failed requests:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])


def small_files(root: Path, data: bytes, seconds: float) -> tuple[float, float]:
    root.mkdir()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tmp = root / f"{n}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, root / str(n))
        n += 1
    put = n / (time.perf_counter() - start)
    m, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        with open(root / str(m % n), "rb") as f:
            f.read()
        m += 1
    return put, m / (time.perf_counter() - start)


def md5_rate(src: Path) -> float:
    """MiB/s of hashlib.md5 over the file's bytes: a single PUT's ETag is their MD5, so no
    PUT can be faster than this."""
    data = src.read_bytes()
    start, h = time.perf_counter(), hashlib.md5()
    for i in range(0, len(data), MiB):
        h.update(data[i:i + MiB])
    return len(data) / MiB / (time.perf_counter() - start)


def large_file(path: Path, src: Path) -> tuple[float, float]:
    data = src.read_bytes()
    start = time.perf_counter()
    with open(path, "wb") as f:
        for i in range(0, len(data), MiB):
            f.write(data[i:i + MiB])
        f.flush()
        os.fsync(f.fileno())
    put = len(data) / MiB / (time.perf_counter() - start)
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(MiB):
            pass
    get = len(data) / MiB / (time.perf_counter() - start)
    path.unlink()
    return put, get


@contextlib.contextmanager
def as_over_https():
    """boto3 sends aws-chunked bodies with trailing checksums over https only: make it do so
    over this http endpoint."""
    real = botocore.httpchecksum.urlparse
    botocore.httpchecksum.urlparse = lambda url: real(url.replace("http://", "https://", 1))
    try:
        yield
    finally:
        botocore.httpchecksum.urlparse = real


def boto3_put(s3, body: bytes, key: str) -> float:
    start = time.perf_counter()
    s3.put_object(Bucket="bench", Key=key, Body=body)
    return time.perf_counter() - start


def curl(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", *argv], check=True)
    return time.perf_counter() - start


def fill(db: Path, bucket: str, template_key: str, keys: int) -> None:
    """`keys` rows like `template_key`'s, under zero-padded names, in one transaction."""
    with sqlite3.connect(db, timeout=60) as c:
        row = c.execute("SELECT * FROM s3_objects WHERE bucket = ? AND key = ?",
                        (bucket, template_key)).fetchone()
        cols = [d[0] for d in c.execute("SELECT * FROM s3_objects LIMIT 0").description]
        i = cols.index("key")
        rows = ((*row[:i], f"k/{n:07d}", *row[i + 1:]) for n in range(keys))
        c.executemany(f"INSERT INTO s3_objects VALUES ({', '.join('?' * len(cols))})", rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=256)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where the data dir and the files go")
    args = ap.parse_args()
    results: dict[str, float] = {}
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dayfly-s3bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        data = work / "data"
        proc, url = start_platform(data)
        try:
            s3 = client(url, data)
            s3.create_bucket(Bucket="bench")
            small = os.urandom(4096)
            (work / "small.bin").write_bytes(small)
            s3.put_object(Bucket="bench", Key="small", Body=small)
            lua = work / "put.lua"
            lua.write_text(PUT_LUA.format(body=work / "small.bin"))
            sign = {"ExpiresIn": 3600}
            put_url = s3.generate_presigned_url(
                "put_object", Params={"Bucket": "bench", "Key": "small-put"}, **sign)
            get_url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": "bench", "Key": "small"}, **sign)
            results["small_put"] = wrk(put_url, args.seconds, args.connections, lua)
            results["small_get"] = wrk(get_url, args.seconds, args.connections)
            results["file_small_put"], results["file_small_get"] = small_files(
                work / "files", small, args.seconds)

            big = work / "big.bin"
            with open(big, "wb") as f:
                for _ in range(args.large_mib):
                    f.write(os.urandom(MiB))
            put_url = s3.generate_presigned_url(
                "put_object", Params={"Bucket": "bench", "Key": "big"}, **sign)
            get_url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": "bench", "Key": "big"}, **sign)
            puts, gets, fputs, fgets, md5s, bputs, tputs = [], [], [], [], [], [], []
            body = big.read_bytes()
            for _ in range(args.runs):
                puts.append(args.large_mib / curl(["-T", str(big), put_url]))
                gets.append(args.large_mib / curl([get_url]))
                fp, fg = large_file(work / "big.copy", big)
                fputs.append(fp)
                fgets.append(fg)
                md5s.append(md5_rate(big))
                bputs.append(args.large_mib / boto3_put(s3, body, "big-boto3"))
                with as_over_https():
                    tputs.append(args.large_mib / boto3_put(s3, body, "big-trailer"))
            del body
            results.update(large_put=max(puts), large_get=max(gets), file_large_put=max(fputs),
                           file_large_get=max(fgets), md5=max(md5s), boto3_put=max(bputs),
                           trailer_put=max(tputs))
            big.unlink()

            s3.create_bucket(Bucket="listing")
            s3.put_object(Bucket="listing", Key="template", Body=b"x")
            fill(data / "dayfly.db", "listing", "template", args.keys)
            start = time.perf_counter()
            n = 0
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="listing",
                                                                     Prefix="k/"):
                n += page["KeyCount"]
            results["list_boto3"] = n / (time.perf_counter() - start)
            assert n == args.keys, n
            start, n, token = time.perf_counter(), 0, None
            with httpx.Client() as http:
                while True:
                    params = {"Bucket": "listing", "Prefix": "k/", "MaxKeys": 1000}
                    if token:
                        params["ContinuationToken"] = token
                    body = http.get(s3.generate_presigned_url("list_objects_v2",
                                                              Params=params)).text
                    n += body.count("<Key>")
                    m = re.search(r"<NextContinuationToken>([^<]+)<", body)
                    if not m:
                        break
                    token = m[1]
            results["list_raw"] = n / (time.perf_counter() - start)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    r = results
    print(f"`{shlex.join(['python', *sys.argv])}`: {os.cpu_count()} cores, load average "
          f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| objects | op | dayfly S3 | local files (Python) | S3 / files |\n"
          "|---|---|---:|---:|---:|")
    for op in ("put", "get"):
        s, f = r[f"small_{op}"], r[f"file_small_{op}"]
        print(f"| 4 KiB (wrk, {args.connections} connections) | {op.upper()} | {s:,.0f} req/s "
              f"| {f:,.0f} ops/s | {s / f:.2f} |")
    for op in ("put", "get"):
        s, f = r[f"large_{op}"], r[f"file_large_{op}"]
        print(f"| {args.large_mib} MiB (curl) | {op.upper()} | {s:,.0f} MiB/s | "
              f"{f:,.0f} MiB/s | {s / f:.2f} |")
    for name, what in (("boto3_put", "boto3 put_object over http (signed SHA-256 payload, "
                                      "CRC32 header)"),
                       ("trailer_put", "boto3 put_object as over https (aws-chunked, "
                                       "CRC32 trailer)")):
        s, f = r[name], r["file_large_put"]
        print(f"| {args.large_mib} MiB ({what}) | PUT | {s:,.0f} MiB/s | {f:,.0f} MiB/s | "
              f"{s / f:.2f} |")
    print(f"\nMD5 of the {args.large_mib} MiB in Python (hashlib, one thread): "
          f"{r['md5']:,.0f} MiB/s, the ceiling of a single PUT (its ETag).")
    print(f"\nListObjectsV2 of {args.keys:,} keys: {r['list_boto3']:,.0f} keys/s with boto3's "
          f"paginator, {r['list_raw']:,.0f} keys/s raw HTTP (httpx)")


if __name__ == "__main__":
    main()
