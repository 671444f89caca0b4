"""What storing a code zip costs: BundleStore.put (every check, counted writes, sealing, the
compile child) beside a peer, zipfile.extractall plus compileall in process (what the old
code did, less its checks), and the floor, extractall alone; and how fast a bomb is refused.
One process, the same zips, interleaved runs.

    python benchmarks/bundles.py [--rounds 3]

Zips: `many` is 2,000 small modules in 200 packages (a typical dependency tree); `large` is
one 240 MiB file of zeros (~240 KB deflated: the issue's case); `bomb` declares 260 MiB.
"""

from __future__ import annotations

import argparse
import compileall
import io
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from dayfly.config import Settings
from dayfly.control.bundles import BundleStore, remove_tree
from dayfly.errors import InvalidParameter


def zip_many() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
        for p in range(200):
            zf.writestr(f"pkg{p}/__init__.py", "")
            for m in range(10):
                zf.writestr(f"pkg{p}/mod{m}.py", f"VALUE = {m}\n" + "def f(x):\n    return x\n" * 40)
    return buf.getvalue()


def zip_zeros(size: int) -> bytes:
    buf, chunk = io.BytesIO(), bytes(1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
        with zf.open("zeros.bin", "w") as f:
            for _ in range(size >> 20):
                f.write(chunk)
    return buf.getvalue()


def time_put(data: bytes, refused: bool = False) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-bundles-"))
    try:
        Settings(data_dir=root).ensure_dirs()
        t = time.perf_counter()
        try:
            BundleStore(root).put(data)
        except InvalidParameter:
            if not refused:
                raise
        else:
            assert not refused, "the bomb was accepted"
        elapsed = time.perf_counter() - t
        assert not refused or not any((root / "code").iterdir())
        return elapsed
    finally:
        remove_tree(root)


def time_extractall(data: bytes, compile_too: bool = False) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        t = time.perf_counter()
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(root)
        if compile_too:
            compileall.compile_dir(str(root), quiet=2, workers=1)
        return time.perf_counter() - t
    finally:
        shutil.rmtree(root)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    zips = {"many (2,000 modules)": zip_many(), "large (240 MiB of zeros)": zip_zeros(240 << 20)}
    bomb = zip_zeros(260 << 20)
    rows: dict[str, dict[str, list[float]]] = {k: {"put": [], "floor": [], "peer": []}
                                               for k in zips}
    refusals: list[float] = []
    for _ in range(args.rounds):
        for name, data in zips.items():
            rows[name]["floor"].append(time_extractall(data))
            rows[name]["peer"].append(time_extractall(data, compile_too=True))
            rows[name]["put"].append(time_put(data))
        refusals.append(time_put(bomb, refused=True))
    print("| zip | compressed | BundleStore.put | peer: extractall + compileall in process "
          "| floor: extractall |")
    print("|---|---|---|---|---|")
    for name, data in zips.items():
        put, peer, floor = (statistics.median(rows[name][k]) for k in ("put", "peer", "floor"))
        print(f"| {name} | {len(data) / 1024:.0f} KiB | {put * 1000:.0f} ms | "
              f"{peer * 1000:.0f} ms ({put / peer:.2f}x) | {floor * 1000:.0f} ms |")
    print(f"\nbomb declaring 260 MiB ({len(bomb) / 1024:.0f} KiB): refused in "
          f"{statistics.median(refusals) * 1000:.1f} ms, nothing written "
          f"(median of {args.rounds})")


if __name__ == "__main__":
    main()
