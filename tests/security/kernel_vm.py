"""Run a command on another kernel: a throwaway qemu VM over this machine's own files.

What a test cannot change on the host (here: the cgroup hierarchy, v1 on this machine and
v2 on most users' machines) it can have in a VM. The VM boots Debian's packaged kernel
(`linux-image-amd64`) with a tiny initramfs made on the spot from a static busybox
(`busybox-static`) and the kernel's own 9p and overlay modules; it mounts the host's root
filesystem read-only over virtio-9p with a tmpfs on top (so the guest may write anywhere
and nothing it writes reaches the host), mounts cgroup2 on /sys/fs/cgroup and runs the
command as root in the guest, with the host's interpreter, packages and this checkout.

    python tests/security/kernel_vm.py -- python -m dayfly.cli.main doctor

qemu emulates the CPU (TCG) unless DAYFLY_VM_ACCEL=kvm: nested KVM is unreliable in cloud
VMs (on this project's CI machines a KVM guest never gets past the BIOS). Under TCG Python
runs about 25x slower, so use this for correctness, never for timing.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
EXIT = "DAYFLY-VM-EXIT="

INIT = """#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc; $B mount -t sysfs sys /sys; $B mount -t devtmpfs dev /dev
for m in {modules}; do $B insmod /mod/$m.ko || exit 1; done
$B mkdir -p /lower /upper /newroot
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose host /lower
$B mount -t tmpfs -o size={upper} upper /upper; $B mkdir /upper/u /upper/w
$B mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w root /newroot
$B mount --move /dev /newroot/dev
$B mount -t proc proc /newroot/proc; $B mount -t sysfs sys /newroot/sys
$B mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
$B mount -t tmpfs run /newroot/run
$B hostname dayfly-vm; $B ip link set lo up
$B cat > /newroot/run/stage2 <<'EOS'
#!/bin/sh
. "$(sed -n 's/.*dayfly.run=\\([^ ]*\\).*/\\1/p' /proc/cmdline)"
echo "{exit}$?"
echo o > /proc/sysrq-trigger
EOS
exec $B switch_root /newroot /bin/sh /run/stage2
"""


@dataclass
class Result:
    returncode: int | None  # None: the guest never reported (boot failure, timeout)
    output: str  # the guest's console: the command's stdout and stderr, kernel messages


def missing() -> str | None:
    """Why a VM cannot be started here, or None."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "needs x86_64 Linux"
    if os.geteuid() != 0:
        return "needs root (the guest reads the host's files as root)"
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
    if not BUSYBOX.is_file() or b"/lib64/ld-linux" in BUSYBOX.read_bytes()[:4096]:
        return "a static busybox is not installed (Debian: busybox-static)"
    if kernel() is None:
        return "no kernel with 9p modules in /boot (Debian: linux-image-amd64)"
    return None


def kernel() -> tuple[Path, str] | None:
    """The newest /boot/vmlinuz-* whose modules include 9p: (image, version)."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if list(Path("/lib/modules", version).glob("kernel/fs/9p/9p.ko*")):
            found.append((image.stat().st_mtime, image, version))
    return max(found)[1:] if found else None


def _modules(version: str) -> list[Path]:
    """The modules to load, dependencies first (modprobe's own order), without repeats."""
    order: list[Path] = []
    for name in MODULES:
        out = subprocess.run(["modprobe", "-S", version, "--show-depends", name],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("insmod "):
                path = Path(line.split()[1])
                if path not in order:
                    order.append(path)
    return order


def _initramfs(version: str, dest: Path, upper: str) -> None:
    files: dict[str, tuple[bytes, int]] = {"bin/busybox": (BUSYBOX.read_bytes(), 0o755)}
    names = []
    for path in _modules(version):
        data = path.read_bytes()
        if path.suffix == ".xz":
            import lzma
            data = lzma.decompress(data)
        elif path.suffix == ".zst":
            data = subprocess.run(["zstd", "-dc", str(path)], capture_output=True,
                                  check=True).stdout
        name = path.name.split(".ko")[0]
        names.append(name)
        files[f"mod/{name}.ko"] = (data, 0o644)
    files["init"] = (INIT.format(modules=" ".join(names), upper=upper, exit=EXIT).encode(),
                     0o755)
    dest.write_bytes(gzip.compress(_cpio(files), 1))


def _cpio(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A newc archive: the directories the files need, then the files."""
    out = bytearray()
    ino = 1

    def entry(name: str, mode: int, data: bytes = b"") -> None:
        nonlocal ino
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out.extend(b"070701" + "".join(f"{f:08x}" for f in fields).encode() + raw)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
        ino += 1

    dirs = sorted({str(Path(n).parent) for n in files} - {"."} | {"proc", "sys", "dev"})
    for d in dirs:
        entry(d, 0o040755)
    for name, (data, perm) in files.items():
        entry(name, 0o100000 | perm, data)
    entry("TRAILER!!!", 0)
    return bytes(out)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900,
        memory_mb: int = 3072, cpus: int = 2) -> Result:
    """Run `argv` as root in a fresh VM (cgroup v2 mounted) and return its exit code and
    console. `cwd` and every path in `argv` must exist on the host (the guest sees the host's
    files, read-only, under its own writable layer)."""
    why = missing()
    if why:
        raise RuntimeError(why)
    image, version = kernel()  # type: ignore[misc]
    accel = os.environ.get("DAYFLY_VM_ACCEL", "tcg")
    with tempfile.TemporaryDirectory(prefix="dayfly-vm-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        _initramfs(version, work / "initrd.gz", upper=f"{memory_mb // 2}m")
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
        (work / "run.sh").write_text(
            f"export HOME=/root PATH={shlex.quote(os.environ.get('PATH', '/usr/bin:/bin'))}\n"
            f"{exports}cd {shlex.quote(str(cwd))} && {shlex.join(argv)} 2>&1\n")
        console = work / "console.log"
        qemu = ["qemu-system-x86_64", "-accel", "kvm" if accel == "kvm" else "tcg,thread=multi",
                "-cpu", "host" if accel == "kvm" else "max", "-m", str(memory_mb),
                "-smp", str(cpus), "-nodefaults", "-display", "none", "-no-reboot",
                "-serial", f"file:{console}", "-kernel", str(image),
                "-initrd", str(work / "initrd.gz"),
                "-virtfs", "local,path=/,mount_tag=host,security_model=passthrough,"
                           "readonly=on,multidevs=remap",
                "-append", f"console=ttyS0 quiet panic=-1 dayfly.run={work / 'run.sh'}"]
        # on a timeout run() kills qemu; the console says how far the guest got
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(qemu, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, check=False)
        text = console.read_text(errors="replace") if console.exists() else ""
    codes = re.findall(rf"^{EXIT}(\d+)\r?$", text, re.M)
    return Result(int(codes[-1]) if codes else None, text)


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(__doc__)
        return 2
    result = run(args, Path.cwd())
    sys.stdout.write(result.output)
    return 1 if result.returncode is None else result.returncode


if __name__ == "__main__":
    sys.exit(main())
