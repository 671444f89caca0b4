"""A benchmark run that fails keeps its server's log (issue 18: a density run at 5,000 failed
and its temporary folder, log included, was deleted with it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_a_failed_density_run_keeps_its_server_log(tmp_path):
    # python9.9 is no runtime: the deploy is refused (400), after the server started and logged
    done = subprocess.run([sys.executable, str(BENCH / "density.py"), "--isolation", "process",
                           "--instances", "1", "--runtime", "python9.9", "--timeout", "30"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert done.returncode != 0, done.stdout
    found = re.search(r"server log is kept: (\S+)", done.stderr)
    assert found, done.stderr[-2000:]
    log = Path(found.group(1))
    assert log.parent == tmp_path  # the rest of the run's folder is gone
    assert "listening on" in log.read_text(), log.read_text()
    assert not list(tmp_path.glob("dayfly-density-*"))
