"""The Python interpreter as jailed sandboxes see it: at /var/lang, never at its host path.

The host's interpreter is staged once under `<data dir>/lang` (a copy of the small binary whose
RUNPATH names its own `../lib` instead of the host's library directory, and a link to
libpython); sandboxes mount that and the standard library at neutral paths and start the
interpreter there, so that sys.executable, sys.prefix, sys.path, module files, /proc/self/exe
and /proc/self/maps say /var/lang (docs/security.md: "What an instance sees of the host").
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LANG = "/var/lang"
_ORIGIN_LIB = b"$ORIGIN/../lib"


@dataclass(frozen=True, slots=True)
class Lang:
    """How to mount and start the staged interpreter inside a sandbox."""

    python: str  # the interpreter's path inside the sandbox
    layers: list[tuple[str, str]]  # (host directory, sandbox directory), mounted in this order
    masks: list[str]  # sandbox directories hidden under an empty read-only tmpfs
    env: dict[str, str] = field(default_factory=dict)  # what the interpreter needs to start


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


def _stdlib_dest(path: str) -> str:
    """Where a directory of the interpreter's installation appears under /var/lang."""
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(sys.base_prefix))
    if rel.startswith(".."):  # not below the prefix (unusual layouts): where Python looks
        rel = f"{sys.platlibdir}/python{sys.version_info[0]}.{sys.version_info[1]}"
    return f"{LANG}/{rel}"


def stage(target: Path) -> Lang:
    """Stage this host's interpreter in `target` (idempotent; replaced whole) for sandboxes."""
    exe = os.path.realpath(sys.executable)
    name = os.path.basename(exe)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    soname = sysconfig.get_config_var("INSTSONAME") or ""
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED")) and soname
    # the installation's own directories: in a virtual environment the default scheme names
    # the environment (platstdlib = .venv/lib/pythonX.Y, which holds only site-packages)
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
            "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
    paths = sysconfig.get_paths(vars=base)
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
        dest = _stdlib_dest(d)
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
