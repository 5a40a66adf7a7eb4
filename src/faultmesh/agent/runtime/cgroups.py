"""A process's cgroup directories on this node, for cgroup v1, v2 and the hybrid of both.

``/proc/PID/cgroup`` names, per hierarchy, the cgroup path; ``/proc/self/mountinfo`` says where each
hierarchy is mounted (and which subtree, for bind mounts). Together they give the directories a
spawned stressor is written into so its usage counts against the target, and the files its usage is
read from. Paths are as this agent sees them: the agent must run in the host's cgroup namespace
(as a DaemonSet with ``hostPID`` and the host's ``/sys/fs/cgroup``, or on the host itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PROC = Path("/proc")
#: Super options of a v1 cgroup mount that are not controllers.
_NOT_CONTROLLERS = frozenset({
    "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "none", "all",
    "favordynmods", "nsdelegate", "memory_recursiveprot", "memory_localevents",
})


class CgroupError(RuntimeError):
    """A process's cgroups cannot be read or used (it is gone, or a file says something unexpected)."""


@dataclass(frozen=True)
class CgroupLine:
    """One line of ``/proc/PID/cgroup``: ``hierarchy-id:controllers:path``."""

    hierarchy: int
    #: v1: ``("cpu", "cpuacct")`` or ``("name=systemd",)``; v2: ``()``.
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class CgroupMount:
    """A mounted cgroup hierarchy: its version, controllers (v1), the subtree mounted, and where."""

    version: Literal[1, 2]
    controllers: frozenset[str]
    root: str
    mountpoint: Path


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        parts = raw.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            raise CgroupError(f"unexpected line in /proc/PID/cgroup: {raw!r}")
        controllers = tuple(c for c in parts[1].split(",") if c)
        lines.append(CgroupLine(int(parts[0]), controllers, parts[2]))
    return lines


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts listed in a ``mountinfo`` text."""
    mounts = []
    for line in mountinfo.splitlines():
        left, separator, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not separator or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint = _unescape(fields[3]), Path(_unescape(fields[4]))
        if tail[0] == "cgroup2":
            mounts.append(CgroupMount(2, frozenset(), root, mountpoint))
            continue
        options = tail[2].split(",")
        controllers = frozenset(
            o for o in options if o.startswith("name=") or ("=" not in o and o not in _NOT_CONTROLLERS)
        )
        mounts.append(CgroupMount(1, controllers, root, mountpoint))
    return mounts


def _within(path: str, root: str) -> str | None:
    """``path`` relative to the mounted subtree ``root``, or None when it lies outside it."""
    if root in ("", "/"):
        return path.lstrip("/")
    root = root.rstrip("/")
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    return None


def _preference(mount: CgroupMount) -> tuple[int, int]:
    # The whole hierarchy mounted under /sys/fs/cgroup first; then any other mount of it.
    return (0 if mount.root == "/" else 1, 0 if str(mount.mountpoint).startswith("/sys/fs/cgroup") else 1)


@dataclass(frozen=True)
class CgroupPaths:
    """Where one process's cgroups are: a directory per v1 hierarchy and/or its v2 directory."""

    pid: int
    #: v1: each controller (and ``name=…`` hierarchy) → its directory; co-mounted controllers share one.
    v1: Mapping[str, Path] = field(default_factory=dict)
    #: The v2 directory, when the process's ``0::`` line falls in a mounted cgroup2.
    unified: Path | None = None
    #: Hierarchies the process is in that this agent cannot see mounted (nothing to write there).
    unreachable: tuple[str, ...] = ()

    @property
    def mode(self) -> Literal["v1", "v2", "hybrid"]:
        if self.v1 and self.unified is not None:
            return "hybrid"
        return "v2" if self.unified is not None else "v1"

    def directories(self) -> tuple[Path, ...]:
        """Every distinct directory, v1 hierarchies first: where a process is written to join them all."""
        seen: dict[Path, None] = dict.fromkeys(self.v1.values())
        if self.unified is not None:
            seen[self.unified] = None
        return tuple(seen)

    def attach(self, pid: int) -> None:
        """Move ``pid`` (the whole process, all its threads) into every one of these cgroups."""
        for directory in self.directories():
            try:
                (directory / "cgroup.procs").write_text(f"{pid}\n")
            except ProcessLookupError:
                raise CgroupError(f"cannot move pid {pid} into {directory}: the process is gone") from None
            except OSError as error:
                reason = error.strerror or error
                raise CgroupError(f"cannot move pid {pid} into {directory}: {reason}") from None

    def cpu_usage_ns(self) -> int:
        """CPU time used by the cgroup and its descendants, in nanoseconds (v1 cpuacct, else v2 cpu.stat)."""
        cpuacct = self.v1.get("cpuacct")
        if cpuacct is not None:
            return int(_read(cpuacct / "cpuacct.usage"))
        if self.unified is not None:
            for line in _read(self.unified / "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * 1000
            raise CgroupError(f"{self.unified / 'cpu.stat'} has no usage_usec")
        raise CgroupError(f"pid {self.pid} is in no cpuacct (v1) or cgroup2 hierarchy this agent can read")

    def memory_usage_bytes(self) -> int:
        """Memory charged to the cgroup now (v1 memory.usage_in_bytes, else v2 memory.current)."""
        memory = self.v1.get("memory")
        if memory is not None:
            return int(_read(memory / "memory.usage_in_bytes"))
        if self.unified is not None and (self.unified / "memory.current").exists():
            return int(_read(self.unified / "memory.current"))
        raise CgroupError(f"pid {self.pid} is in no memory cgroup this agent can read")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as error:
        raise CgroupError(f"cannot read {path}: {error.strerror or error}") from None


def resolve(pid: int, lines: list[CgroupLine], mounts: list[CgroupMount]) -> CgroupPaths:
    """Join a process's cgroup lines with the mounted hierarchies (pure; see :func:`cgroup_paths`)."""
    v1: dict[str, Path] = {}
    unified: Path | None = None
    unreachable: list[str] = []
    for line in lines:
        if line.hierarchy == 0 and not line.controllers:
            candidates = [m for m in mounts if m.version == 2]
            label = "cgroup2"
        else:
            wanted = frozenset(line.controllers)
            candidates = [m for m in mounts if m.version == 1 and m.controllers == wanted]
            label = ",".join(line.controllers) or f"hierarchy {line.hierarchy}"
        directory = None
        for mount in sorted(candidates, key=_preference):
            relative = _within(line.path, mount.root)
            if relative is not None:
                directory = mount.mountpoint / relative if relative else mount.mountpoint
                break
        if directory is None:
            unreachable.append(label)
        elif line.controllers:
            for controller in line.controllers:
                v1[controller] = directory
        else:
            unified = directory
    return CgroupPaths(pid=pid, v1=v1, unified=unified, unreachable=tuple(unreachable))


def cgroup_paths(pid: int, proc: Path = PROC) -> CgroupPaths:
    """The cgroup directories of ``pid`` as this agent sees them."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise CgroupError(f"process {pid} does not exist") from None
    mounts = parse_cgroup_mounts((proc / "self" / "mountinfo").read_text())
    return resolve(pid, parse_proc_cgroup(text), mounts)
