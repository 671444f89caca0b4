"""The README runs as written: its ```sh blocks (and its boto3 ```python block), in order, in one
`bash -e` in a fresh folder, against a real `dayfly up --example` (what ./scripts/up starts).

Not run: the quick start's `./scripts/up` and `./scripts/test` (this test is what they set up)
and lines that never end (`dayfly logs NAME -f`). `source .venv/bin/activate` finds a
`.venv/bin/activate` that puts this interpreter's bin directory (its `dayfly` and `aws`) on
PATH. Port 8080 in the README's URLs becomes the test server's port.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import start_server, stop_server

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SET_UP = re.compile(r"^\./scripts/(up|test)\b")
NEVER_ENDS = re.compile(r"^dayfly logs\b.*\s(-f|--follow)\b")
PORT = re.compile(r"\b(127\.0\.0\.1|localhost):8080\b")
FAILED = "README-EXAMPLE-FAILED"
PY_END = "README_PYTHON_BLOCK"


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts in the README (its first line) and what it runs."""

    number: int
    line: int
    lang: str
    text: str


def blocks(markdown: str) -> list[Block]:
    """The sh and python blocks, in order, numbered as they appear among all fenced blocks."""
    out = []
    for n, m in enumerate(FENCE.finditer(markdown), 1):
        if m.group(1) in ("sh", "python"):
            line = markdown.count("\n", 0, m.start(2)) + 1
            out.append(Block(n, line, m.group(1), m.group(2)))
    return out


def runnable(block: Block) -> str:
    """The block as bash, line for line (so $LINENO maps back), minus set-up and endless lines."""
    if block.lang == "python":  # one command: a failure names the block's first line
        return f'"$README_PYTHON" - <<\'{PY_END}\'\n{block.text}{PY_END}\n'
    keep = [("" if SET_UP.match(ln) or NEVER_ENDS.match(ln) else ln)
            for ln in block.text.splitlines()]
    return "\n".join(keep) + "\n"


def script(markdown: str, folder: Path, port: int) -> Path:
    """One file per block, sourced in order by one `bash -e`; an ERR trap names the command."""
    parts = ["set -eE", f"trap 'echo \"{FAILED} block $README_BLOCK (README line "
             "$((README_LINE + LINENO - 1))): $BASH_COMMAND\" >&2' ERR"]
    for b in blocks(markdown):
        text = PORT.sub(rf"\g<1>:{port}", runnable(b))
        path = folder / f".readme-block-{b.number}.sh"
        path.write_text(text)
        parts += [f"README_BLOCK={b.number} README_LINE={b.line}",
                  f"echo '--- block {b.number}, README line {b.line}' >&2",
                  f"source {shlex.quote(str(path))}"]
    main = folder / ".readme.sh"
    main.write_text("\n".join(parts) + "\n")
    return main


def run(markdown: str, folder: Path, port: int, endpoint: str, home: Path,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the README's examples in `folder` as a user would in a fresh shell."""
    bindir = Path(sys.executable).parent
    venv = folder / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text(f'export PATH={shlex.quote(str(bindir))}:"$PATH"\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "DAYFLY_", "BOTO_"))}
    env.update(HOME=str(home), DAYFLY_ENDPOINT=endpoint, README_PYTHON=sys.executable,
               AWS_PAGER="", PATH=os.environ.get("PATH", "/usr/bin:/bin"))
    proc = subprocess.Popen(["bash", str(script(markdown, folder, port))], cwd=folder, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # bash's session: whatever the examples started
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_failing_example_is_named(tmp_path):
    """The runner stops at the first failing command and names its block, README line, command."""
    md = "text\n\n```toml\nx = 1\n```\n\n```sh\necho one\n```\n\n```sh\ntrue\nfalse --flag\necho never\n```\n"
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    proc = run(md, work, 1, "http://127.0.0.1:1", home)
    assert proc.returncode != 0
    assert f"{FAILED} block 3 (README line 13): false --flag" in proc.stderr, proc.stderr
    assert "one" in proc.stdout and "never" not in proc.stdout


def test_python_block_runs_with_the_port_substituted(tmp_path):
    md = ('```python\nimport sys\nprint("http://127.0.0.1:8080/x")\nsys.exit(3)\n```\n')
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    proc = run(md, work, 4321, "http://127.0.0.1:4321", home)
    assert "http://127.0.0.1:4321/x" in proc.stdout
    assert f"{FAILED} block 1 (README line 2)" in proc.stderr, proc.stderr


def test_quick_start_is_two_commands():
    quick = blocks(README.read_text())[0]
    assert [ln.split()[0] for ln in quick.text.splitlines()] == ["./scripts/up", "./scripts/test"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_examples_run_in_order(tmp_path):
    server = start_server(tmp_path / "data", "--example")
    try:
        home, work = tmp_path / "home", tmp_path / "work"
        home.mkdir()
        work.mkdir()
        try:
            proc = run(README.read_text(), work, server.port, server.url, home)
        except subprocess.TimeoutExpired as exc:  # a command that never ends: name its block
            err = str(exc.stderr or "")
            started = [ln for ln in err.splitlines() if ln.startswith("--- block")]
            pytest.fail(f"README example still running after {exc.timeout} s: "
                        f"{started[-1] if started else 'before the first block'}\n{err[-4000:]}")
        failed = [ln for ln in proc.stderr.splitlines() if ln.startswith(FAILED)]
        assert proc.returncode == 0 and not failed, (
            f"{failed[0] if failed else 'exit ' + str(proc.returncode)}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    finally:
        stop_server(server)
