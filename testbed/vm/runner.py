"""Boot a Debian kernel under qemu, run one command of the host's own filesystem inside it, power off.

The guest sees the host root read-only over virtio-9p plus one writable I/O directory (the command script
goes in, stdout, stderr and the exit code come out), and has no network device at all. KVM is used when
FAULTMESH_VM_ACCEL=kvm asks for it; the default is emulation (TCG), which needs nothing from the host. On
these machines /dev/kvm opens but a nested guest hangs in early boot, so KVM is never picked on its own.
"""

from __future__ import annotations

import codecs
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.image import debian
from testbed.vm.initramfs import IO_MOUNT, IO_TAG, ROOT_TAG, Kernel, fetch_kernel, initramfs_path

PACKAGES = ("qemu-system-x86",)
ACCEL_ENV = "FAULTMESH_VM_ACCEL"
IN_VM_ENV = "FAULTMESH_IN_VM"
# Passed through from the caller's environment unless the caller overrides them.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TERM", "PYTHONUNBUFFERED")


class VMError(RuntimeError):
    """The VM did not boot, did not finish in time, or could not run the command."""


@dataclass
class VMResult:
    returncode: int
    stdout: str
    stderr: str
    console: str  # the kernel's serial console: boot messages and init's own lines
    accel: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds: prepare, boot_run_poweroff, total


def default_accel() -> str:
    accel = os.environ.get(ACCEL_ENV, "tcg")
    if accel not in ("tcg", "kvm"):
        raise VMError(f"{ACCEL_ENV}={accel!r}: expected tcg or kvm")
    return accel


def shared_path(name: str) -> str:
    """Where a file passed in `run(share={name: path})` appears inside the guest."""
    return f"{IO_MOUNT}/share/{name}"


def command_script(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    lines = ["set -e", f"cd {shlex.quote(str(cwd))}"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    lines.append("set +e")
    lines.append(f"exec {shlex.join(argv)}")
    return "\n".join(lines) + "\n"


def qemu_argv(
    kernel: Kernel,
    initramfs: Path,
    io_dir: Path,
    *,
    accel: str,
    memory_mb: int,
    cpus: int,
    modules: Sequence[str],
    console: Path,
) -> list[str]:
    append = ["console=ttyS0", "quiet", "loglevel=4", "panic=-1"]
    if modules:
        append.append("testbed.modules=" + ",".join(modules))
    return [
        "qemu-system-x86_64",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-machine",
        f"q35,accel={accel}",
        "-cpu",
        "host" if accel == "kvm" else "max",
        "-smp",
        str(cpus),
        "-m",
        str(memory_mb),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(initramfs),
        "-append",
        " ".join(append),
        "-fsdev",
        "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        f"virtio-9p-pci,fsdev=root,mount_tag={ROOT_TAG}",
        "-fsdev",
        f"local,id=io,path={io_dir},security_model=none,multidevs=remap",
        "-device",
        f"virtio-9p-pci,fsdev=io,mount_tag={IO_TAG}",
    ]


def _read_new(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    modules: Sequence[str] = (),
    timeout: float = 600,
    memory_mb: int = 1024,
    cpus: int = 2,
    accel: str | None = None,
    on_output: Callable[[str, str], None] | None = None,
    share: Mapping[str, Path] | None = None,
) -> VMResult:
    """Run `argv` in a fresh VM with the host root mounted read-only; returns its output and exit code.

    `modules` are loaded (with their dependencies) before the command starts; `on_output(stream, text)`
    receives stdout/stderr as it arrives. The guest's /tmp, /run and /dev/shm are its own tmpfs, so host
    files there are out of its sight: `share` copies files in, visible as `shared_path(name)`.
    Raises VMError when the VM fails before the command finished.
    """
    if not argv:
        raise ValueError("no command to run")
    started = time.monotonic()
    debian.ensure_installed(*PACKAGES)
    kernel = fetch_kernel()
    initramfs = initramfs_path(kernel)
    accel = accel or default_accel()
    guest_env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    guest_env.update({"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", IN_VM_ENV: "1"})
    guest_env.update(env or {})
    io_dir = Path(tempfile.mkdtemp(prefix="fm-vm-"))
    try:
        for name, source in (share or {}).items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"share name {name!r} must be a plain file name")
            (io_dir / "share").mkdir(exist_ok=True)
            shutil.copy2(source, io_dir / "share" / name)
        (io_dir / "command.sh").write_text(command_script(argv, (cwd or Path.cwd()).resolve(), guest_env))
        console = io_dir / "console.log"
        qemu = qemu_argv(
            kernel, initramfs, io_dir, accel=accel, memory_mb=memory_mb, cpus=cpus, modules=modules, console=console
        )
        prepared = time.monotonic()
        qemu_log = io_dir / "qemu.log"
        with qemu_log.open("wb") as qemu_out:
            proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=qemu_out, stderr=subprocess.STDOUT)
        texts = {"stdout": [""], "stderr": [""]}
        try:
            offsets = {"stdout": 0, "stderr": 0}
            # A chunk may end inside a multi-byte character; incremental decoders carry it over.
            decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in offsets}
            deadline = prepared + timeout
            while True:
                finished = proc.poll() is not None
                for stream in ("stdout", "stderr"):
                    data, offsets[stream] = _read_new(io_dir / stream, offsets[stream])
                    text = decoders[stream].decode(data, final=finished)
                    if text:
                        texts[stream].append(text)
                        if on_output is not None:
                            on_output(stream, text)
                if finished:
                    break
                if time.monotonic() > deadline:
                    raise VMError(f"VM still running after {timeout}s; console:\n{_tail(console)}")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:  # timeout, Ctrl-C or a failing callback: never leave qemu behind
                proc.kill()
                proc.wait()
        ended = time.monotonic()
        qemu_output = qemu_log.read_text(errors="replace")
        exit_file = io_dir / "exit-code"
        if not exit_file.is_file():
            raise VMError(
                f"VM stopped (qemu exit {proc.returncode}) before the command finished;\n"
                f"qemu: {qemu_output.strip()}\nconsole:\n{_tail(console)}"
            )
        returncode = int(exit_file.read_text().strip() or "125")
        if returncode == 125 and "testbed-vm: FAILED" in _tail(console):
            raise VMError(f"VM init failed:\n{_tail(console)}")
        return VMResult(
            returncode=returncode,
            stdout="".join(texts["stdout"]),
            stderr="".join(texts["stderr"]),
            console=console.read_text(errors="replace") if console.exists() else "",
            accel=accel,
            timings={
                "prepare": round(prepared - started, 3),
                "boot_run_poweroff": round(ended - prepared, 3),
                "total": round(ended - started, 3),
            },
        )
    finally:
        shutil.rmtree(io_dir, ignore_errors=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"
