"""compress through the platform against the same library calls in this process: one object
(log-like text) to gzip and to zstd. The platform path is the handler in its sandbox streaming
the object (over its bucket binding) through the compressor into a new object; its throughput
is the object's size over the handler's duration (invocation records). In-process, two
baselines, the same compressor fed the same 1 MiB chunks: (a) from memory, with no I/O at all
(the target's reference); (b) read from a file and written to a file made durable as the store
makes an object (fsync, rename, fsync of the directory), the same work the platform must do.

Usage: python benchmarks/builtins_compress.py [--mib 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
from builtins_common import boto_s3, deploy, in_process, median, start, wait_record

CODECS = (("gzip", 6), ("zstd", 3))
CHUNK = 1024 * 1024


def log_text(size: int) -> bytes:
    """Log-like lines: timestamps, levels, words and numbers (compresses 3-5x, like logs)."""
    rnd = random.Random(7)
    base = ["user", "order", "cart", "item", "pay", "ship", "retry", "ok", "fail", "timeout",
            "cache", "db", "http", "get", "put", "key"]
    words = [f"{w}{i}" for i, w in enumerate(base * 40)]
    lines, n = [], 0
    while n < size:
        line = (f"2024-05-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:"
                f"{rnd.randint(0, 59):02d}:{rnd.random() * 60:06.3f}Z "
                f"{rnd.choice(('INFO', 'WARN', 'DEBUG', 'ERROR'))} "
                f"{' '.join(rnd.choices(words, k=rnd.randint(4, 12)))} id={rnd.getrandbits(40)}\n")
        lines.append(line)
        n += len(line)
    return "".join(lines).encode()[:size]


def local(data: bytes, codec: str, level: int) -> tuple[float, int]:
    """Seconds and output bytes of the same compressor over the same chunks, in memory."""
    in_process("compress")
    import stream_codecs

    t = time.perf_counter()
    c = stream_codecs.compressor(codec, level)
    out = 0
    for i in range(0, len(data), CHUNK):
        out += len(c.compress(data[i:i + CHUNK]))
    out += len(c.flush())
    return time.perf_counter() - t, out


def local_files(source: Path, target: Path, codec: str, level: int) -> float:
    """Seconds of the same compressor from a file to a file made durable as the store does."""
    in_process("compress")
    import stream_codecs

    t = time.perf_counter()
    c = stream_codecs.compressor(codec, level)
    tmp = target.with_suffix(".tmp")
    with open(source, "rb", buffering=0) as src, open(tmp, "wb", buffering=0) as dst:
        while chunk := src.read(CHUNK):
            if out := c.compress(chunk):
                dst.write(out)
        dst.write(c.flush())
        os.fsync(dst.fileno())
    os.rename(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data = log_text(args.mib * 1024 * 1024)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dayfly-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        source, target = Path(tmp) / "app.log", Path(tmp) / "app.out"
        source.write_bytes(data)
        proc, url = start(data_dir)
        try:
            s3 = boto_s3(url, data_dir)
            for b in ("logs", "packed"):
                s3.create_bucket(Bucket=b)
            s3.upload_fileobj(__import__("io").BytesIO(data), "logs", "app.log")
            tier = httpx.get(f"{url}/healthz").json()["isolation"]["default"]
            for codec, level in CODECS:
                deploy(url, "compress", codec, {"source_bucket": "logs",
                                                "target_bucket": "packed", "format": codec,
                                                "level": level, "memory": 1769})
                event = {"bucket": "logs", "key": "app.log"}
                local_s, files_s, platform_s, out_size = [], [], [], 0
                for _ in range(args.rounds + 1):  # the first starts the instance
                    secs, out_size = local(data, codec, level)
                    local_s.append(secs)
                    time.sleep(0.3)
                    files_s.append(local_files(source, target, codec, level))
                    time.sleep(0.3)
                    t = time.time()
                    r = httpx.post(f"{url}/2015-03-31/functions/{codec}/invocations",
                                   json=event, timeout=300)
                    if r.headers.get("x-amz-function-error"):
                        raise SystemExit(f"{codec}: {r.text}")
                    platform_s.append(wait_record(url, codec, t, first_wait=0)["duration_ms"]
                                      / 1000)
                    time.sleep(0.3)
                rows.append((codec, level, median(local_s[1:]), median(files_s[1:]),
                             median(platform_s[1:]), out_size))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    mb = len(data) / 1e6
    load = os.getloadavg()[0]
    print(f"`{shlex.join(['python', *sys.argv])}` — {os.cpu_count()} cores; tier {tier}; "
          f"memory 1769 MiB; one {args.mib} MiB log-like object; median of {args.rounds} "
          f"interleaved rounds; load average {load:.1f} at the end\n")
    print("| codec | (a) in-process, memory | (b) in-process, file → durable file | platform "
          "(object → compress → object, handler duration) | ratio to (a) | ratio to (b) | "
          "output |\n| --- | --- | --- | --- | --- | --- | --- |")
    for codec, level, loc, files, plat, out in rows:
        ratio, ratio_files = loc / plat, files / plat
        print(f"| {codec} -{level} | {mb / loc:.1f} MB/s | {mb / files:.1f} MB/s | "
              f"{mb / plat:.1f} MB/s | {ratio:.2f}x {'✓' if ratio >= 0.9 else '✗'} | "
              f"{ratio_files:.2f}x | {out / 1e6:.1f} MB ({len(data) / out:.1f}:1) |")
    print("\nTarget: platform throughput ≥ 0.9x the in-process library calls (a).")


if __name__ == "__main__":
    main()
