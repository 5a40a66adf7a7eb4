"""Host look-ups and forceful clean-up steps for the real node: processes, mounts, links, cgroups.

Each helper acts only on what it is handed (a PID, a path prefix, an interface name), so the node's
teardown never reaches beyond the objects it recorded as its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class HostError(RuntimeError):
    """A host command failed; the message carries the command and its output."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{' '.join(argv)} timed out after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(argv)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc


# ---- processes ---------------------------------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (None once it is gone or a zombie): tells a recycled PID apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def is_gone(pid: int) -> bool:
    """True once `pid` has exited; a zombie counts as gone (only its parent can reap it)."""
    return start_time(pid) is None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def processes() -> Iterable[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = cmdline(int(entry.name))
            if argv:
                yield int(entry.name), argv


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_pid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until every PID has exited; returns those still alive at the deadline."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = {pid for pid in pending if not is_gone(pid)}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return pending


def kill_tree(pids: Iterable[int], timeout: float = 10) -> None:
    """SIGKILL the processes and all their descendants, and wait for them to be gone."""
    victims: set[int] = set()
    for pid in pids:
        victims |= {pid, *descendants(pid)}
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = wait_gone(victims, timeout)
    if left:
        raise HostError(f"processes {sorted(left)} survived SIGKILL for {timeout:.0f} s")


# ---- mounts --------------------------------------------------------------------------------------------


def mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].replace("\\040", " "))
    return points


def mounts_under(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/") + "/"
    return [m for m in mount_points() if m == str(directory) or m.startswith(prefix)]


def unmount_all(paths: Iterable[str]) -> None:
    """Unmount every path, deepest first; a path mounted several times is unmounted until it is not."""
    # The kubelet's root dir is bind-mounted onto itself: stacked mounts need one pass each.
    for _ in range(8):
        remaining = [p for p in set(paths) if p in set(mount_points())]
        if not remaining:
            return
        for mount_point in sorted(remaining, key=len, reverse=True):
            run(["umount", "--lazy", mount_point], check=False)


# ---- network links -------------------------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def links_with_master(bridge: str) -> list[str]:
    out = run(["ip", "-o", "link", "show", "master", bridge], check=False).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]


def ipv4_prefix_in_use(prefix: str) -> bool:
    """Whether any host address or route (any table) starts with `prefix`, e.g. "198.18.3."."""
    pattern = re.compile(r"(?<![\d.])" + re.escape(prefix))
    listings = (["ip", "-o", "-4", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"])
    return any(pattern.search(run(argv).stdout) for argv in listings)


# ---- cgroups -------------------------------------------------------------------------------------------


def cgroup_dirs(relative: str) -> list[Path]:
    """The directory `relative` and everything below it, in every mounted cgroup hierarchy."""
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / relative.strip("/")
        if top.is_dir() and not top.is_symlink():
            # os.walk skips what vanishes meanwhile: the kubelet removes pod cgroups while we look.
            for directory, _, _ in os.walk(top):
                found.append(Path(directory))
    return found


def remove_cgroups(directories: Iterable[Path]) -> None:
    """rmdir deepest first; a cgroup with processes left in it refuses, and shows up as residue."""
    for directory in sorted(set(directories), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(FileNotFoundError, OSError):
            directory.rmdir()


def make_cgroup(relative: str) -> list[Path]:
    """Create `relative` in every hierarchy; a v1 cpuset gets its parent's CPUs and memory nodes."""
    made: list[Path] = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if not hierarchy.is_dir() or hierarchy.is_symlink() or not (hierarchy / "cgroup.procs").exists():
            continue
        target = hierarchy / relative.strip("/")
        if target.is_dir():
            continue
        target.mkdir()
        made.append(target)
        for name in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset starts empty and then takes no task
            source = hierarchy / name
            if source.exists() and (target / name).exists():
                (target / name).write_text(source.read_text().strip() or "\n")
    return made
