"""The Python interpreter as jailed sandboxes see it: at /var/lang, never at its host path.

The host's interpreter is staged once under `<data dir>/lang` (a copy of the small binary whose
RUNPATH names its own `../lib` instead of the host's library directory, and a link to
libpython); sandboxes mount that and the standard library at neutral paths and start the
interpreter there, so that sys.executable, sys.prefix, sys.path, module files, /proc/self/exe
and /proc/self/maps say /var/lang (docs/security.md: "What an instance sees of the host").

Each runtime ("python3.12") runs on an interpreter of that version found on the node: the
one dayfly runs on, those named in DAYFLY_PYTHONS, pyenv's, and `python3.X` on PATH. Another
interpreter is staged the same way under `<data dir>/lang-<runtime>` on first use.
"""

from __future__ import annotations

import filecmp
import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SandboxError
from . import sdk

LANG = "/var/lang"
MIN_MINOR = 10  # the in-sandbox runtime (dayfly/runtime) needs Python 3.10 or later
# what staging needs to know of an interpreter, asked of that interpreter itself
_DESCRIBE = """
import json, os, sys, sysconfig
base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
        "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
p = sysconfig.get_paths(vars=base)
print(json.dumps({"exe": os.path.realpath(sys.executable), "prefix": sys.base_prefix,
  "libdir": sysconfig.get_config_var("LIBDIR") or "",
  "soname": sysconfig.get_config_var("INSTSONAME") or "",
  "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")), "platlibdir": sys.platlibdir,
  "version": "%d.%d.%d" % sys.version_info[:3], "impl": sys.implementation.name,
  "stdlib": p["stdlib"], "platstdlib": p["platstdlib"]}))
"""
_ORIGIN_LIB = b"$ORIGIN/../lib"


@dataclass(frozen=True, slots=True)
class Lang:
    """How to mount and start the staged interpreter inside a sandbox."""

    python: str  # the interpreter's path inside the sandbox
    layers: list[tuple[str, str]]  # (host directory, sandbox directory), mounted in this order
    masks: list[str]  # sandbox directories hidden under an empty read-only tmpfs
    env: dict[str, str] = field(default_factory=dict)  # what the interpreter needs to start
    sdk: str = ""  # the runtime-level boto3's folder inside the sandbox (sandbox/sdk.py)


@dataclass(frozen=True, slots=True)
class Interpreter:
    """A CPython found on this node."""

    runtime: str  # "python3.12"
    executable: str  # its host path
    version: str  # "3.12.1"


def describe(python: str) -> dict:
    """What staging needs to know of `python`, as it says itself."""
    out = subprocess.run([python, "-I", "-S", "-c", _DESCRIBE], capture_output=True, text=True,
                         timeout=30, check=True)
    return json.loads(out.stdout)


def _candidates() -> list[str]:
    """Interpreters to look at, the one dayfly runs on first."""
    found = [os.path.realpath(sys.executable)]
    found += [p for p in os.environ.get("DAYFLY_PYTHONS", "").split(os.pathsep) if p]
    for root in {os.environ.get("PYENV_ROOT") or "", os.path.expanduser("~/.pyenv")} - {""}:
        for path in sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3"))):
            name = path.split(os.sep)[-3].split(".")  # "3.9.18": too old to be worth asking
            if not (name[0] == "3" and len(name) > 1 and name[1].isdigit()
                    and int(name[1]) < MIN_MINOR):
                found.append(path)
    found += [w for m in range(MIN_MINOR, 20) if (w := shutil.which(f"python3.{m}"))
              and os.sep + "shims" + os.sep not in w]  # pyenv's shims: scripts, slow to ask
    return found


@functools.cache
def interpreters() -> dict[str, Interpreter]:
    """Runtime name -> the first interpreter found for it (cached for the process's life)."""
    out: dict[str, Interpreter] = {}
    seen: set[str] = set()
    for path in _candidates():
        real = os.path.realpath(path)
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        try:
            info = describe(real)
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
        major, minor = (int(x) for x in info["version"].split(".")[:2])
        runtime = f"python{major}.{minor}"
        if info["impl"] == "cpython" and major == 3 and minor >= MIN_MINOR and runtime not in out:
            out[runtime] = Interpreter(runtime, real, info["version"])
    return out


def host_runtime() -> str:
    return f"python{sys.version_info[0]}.{sys.version_info[1]}"


def find(runtime: str) -> Interpreter:
    """The interpreter for `runtime`, or a SandboxError naming those there are. A runtime of
    its own ("provided": a bootstrap behind the Runtime API) is served by dayfly's own."""
    if not runtime.startswith("python"):
        runtime = host_runtime()
    found = interpreters()
    if runtime not in found:
        raise SandboxError(f"runtime {runtime} has no interpreter on this node (found: "
                           f"{', '.join(sorted(found)) or 'none'}; `dayfly doctor` lists them)")
    return found[runtime]


class Langs:
    """The interpreters staged on this node, one per runtime, each staged on first use, with
    the runtime-level boto3 (staged with the first zygote, compiled once per interpreter)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.sdk = sdk.where(self.data_dir)
        self._staged: dict[str, Lang] = {}
        self._ready: set[str] = set()  # runtimes whose zygotes found the boto3 copy made
        self._stage(host_runtime())  # the host's own at once: a node that cannot fails now

    def get(self, runtime: str) -> Lang:
        """The staged interpreter for `runtime` (blocking: call off the event loop)."""
        staged = self._staged.get(runtime) or self._stage(runtime)
        if runtime not in self._ready:
            sdk.stage(self.data_dir)
            sdk.compile_soon(self.sdk, find(runtime).executable)
            self._ready.add(runtime)
        return staged

    def _stage(self, runtime: str) -> Lang:
        interp = find(runtime)
        dirname = "lang" if runtime == host_runtime() else f"lang-{runtime}"
        lang = stage(self.data_dir / dirname, interp.executable)
        staged = self._staged[runtime] = Lang(
            python=lang.python, layers=[*lang.layers, (str(self.sdk), sdk.SDK)],
            masks=lang.masks, env=lang.env, sdk=sdk.SDK)
        return staged


def _rewrite_runpath(binary: bytes, libdirs: set[str]) -> bytes | None:
    """The binary with a RUNPATH naming one of `libdirs` changed to `$ORIGIN/../lib` in place
    (shorter strings fit: the rest is NUL padding, as patchelf shrinks one); None if there was
    none to change (no shared libpython, or a path too short to hold the new one)."""
    for libdir in libdirs:
        old = b"\0" + libdir.encode() + b"\0"
        if len(libdir) >= len(_ORIGIN_LIB) and binary.count(old) == 1:
            new = b"\0" + _ORIGIN_LIB.ljust(len(libdir), b"\0") + b"\0"
            return binary.replace(old, new)
    return None


def _stdlib_dest(path: str, info: dict) -> str:
    """Where a directory of the interpreter's installation appears under /var/lang."""
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(info["prefix"]))
    if rel.startswith(".."):  # not below the prefix (unusual layouts): where Python looks
        rel = f"{info['platlibdir']}/python{'.'.join(info['version'].split('.')[:2])}"
    return f"{LANG}/{rel}"


def stage(target: Path, python: str | None = None) -> Lang:
    """Stage an interpreter (this host's by default) in `target` (idempotent; replaced whole)
    for sandboxes."""
    info = describe(python or os.path.realpath(sys.executable))
    exe = info["exe"]
    name = os.path.basename(exe)
    libdir = info["libdir"]
    soname = info["soname"]
    shared = info["shared"] and soname
    # the installation's own directories (asked with the base prefix: in a virtual environment
    # the default scheme names the environment, whose platstdlib holds only site-packages)
    paths = {"stdlib": info["stdlib"], "platstdlib": info["platstdlib"]}
    dirs = [paths["stdlib"]] + ([paths["platstdlib"]] if os.path.realpath(
        paths["platstdlib"]) != os.path.realpath(paths["stdlib"]) else [])
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".lang-", dir=target.parent))
    # explicit modes (the platform's umask is 077): instances, other uids, read all of it
    for folder in (work, work / "bin", work / "lib"):
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o755)
    env: dict[str, str] = {}
    with open(exe, "rb") as f:
        binary = f.read()
    if shared:
        rewritten = _rewrite_runpath(binary, {libdir, os.path.realpath(libdir)})
        if rewritten is None:
            env["LD_LIBRARY_PATH"] = f"{LANG}/lib"  # no RUNPATH of ours: the loader is told
        else:
            binary = rewritten
        lib = os.path.realpath(os.path.join(libdir, soname))
        try:
            os.link(lib, work / "lib" / soname)
        except OSError:  # another filesystem: one copy per node, shared by every sandbox
            shutil.copyfile(lib, work / "lib" / soname)
            os.chmod(work / "lib" / soname, 0o755)
    (work / "bin" / name).write_bytes(binary)
    os.chmod(work / "bin" / name, 0o755)
    if name != "python3":
        (work / "bin" / "python3").symlink_to(name)
    layers = [(str(target), LANG)]
    masks = []
    for d in dirs:
        dest = _stdlib_dest(d, info)
        point = work / os.path.relpath(dest, LANG)  # where the standard library is mounted
        point.mkdir(parents=True, exist_ok=True)
        for made in [point, *point.parents]:
            if made == work:
                break
            os.chmod(made, 0o755)
        layers.append((d, dest))
        masks += [f"{dest}/{sub}" for sub in ("site-packages", "dist-packages")
                  if os.path.isdir(os.path.join(d, sub))]
    _install(work, target, f"bin/{name}", f"lib/{soname}" if shared else None)
    return Lang(python=f"{LANG}/bin/{name}", layers=layers, masks=masks, env=env)


def _install(work: Path, target: Path, binary: str, lib: str | None) -> None:
    """Put the staged `work` at `target`, unless an identical staging is there already: a
    running sandbox may have it mounted, and must not see its files go."""
    same = ((target / binary).is_file()
            and (target / binary).read_bytes() == (work / binary).read_bytes()
            and (lib is None or ((target / lib).is_file()
                                 and filecmp.cmp(target / lib, work / lib, shallow=False))))
    if same:
        shutil.rmtree(work)
        return
    old = target.parent / f".lang-old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(work, target)
    shutil.rmtree(old, ignore_errors=True)
