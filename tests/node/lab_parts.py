"""Parts the node tests' labs share: processes held in a namespace, cgroups of a lab's own, spawned processes,
and the kernel state a network fault may leave in a namespace.

Imported by ``agent_fixtures.py`` also when that runs as a child agent, where testbed/ is not importable:
``NetNamespace`` is named for the type checker only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from faultmesh.agent.exec import SPAWN_ENV

if TYPE_CHECKING:
    from testbed.containerd import NetNamespace

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Hierarchies a lab's process gets cgroups of its own in (those this machine has): v1 controllers and the
#: unified v2 one. The CPU a stress burns is read there.
CGROUP_HIERARCHIES = ("cpu", "cpuacct", "memory", "pids", "unified")
_SPAWN_MARKER = f"{SPAWN_ENV}=".encode()


class Lab(Protocol):
    def start(self) -> None: ...

    def close(self) -> list[str]:
        """Remove everything; returns what had to be removed by force."""
        ...


LabT = TypeVar("LabT", bound=Lab)


@contextlib.contextmanager
def running(lab: LabT) -> Iterator[LabT]:
    """``lab`` started, and closed afterwards pass or fail; anything its close removed by force fails the test."""
    try:
        lab.start()
        yield lab
    finally:
        errors = lab.close()
    assert errors == [], errors


# ---- processes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    pgid: int
    state: str
    comm: str
    cmdline: str
    netns: int | None
    spawn_tag: str | None


def processes() -> list[Proc]:
    """Every live (non-zombie) process: its group, command, network namespace inode and spawn tag."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = Path(entry.path, "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        try:
            netns: int | None = os.stat(Path(entry.path, "ns", "net")).st_ino
        except OSError:
            netns = None
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        tag = next(
            (v[len(_SPAWN_MARKER) :].decode(errors="replace") for v in environ if v.startswith(_SPAWN_MARKER)), None
        )
        found.append(Proc(int(entry.name), int(fields[2]), fields[0], comm, cmdline.strip(), netns, tag))
    return found


def wait_inside(placed: Iterable[tuple[subprocess.Popen[bytes], NetNamespace]], timeout: float) -> None:
    """`ip netns exec` joins the namespace after the fork: wait until each process is inside its namespace."""
    deadline = time.monotonic() + timeout
    for process, ns in placed:
        while os.stat(f"/proc/{process.pid}/ns/net").st_ino != ns.inode():
            assert time.monotonic() < deadline, f"{process.args!r} did not enter {ns.name}"
            time.sleep(0.01)


# ---- cgroups ------------------------------------------------------------------------------------------------


def make_cgroups(name: str, pid: int, made: list[Path]) -> None:
    """A cgroup ``name`` in each of CGROUP_HIERARCHIES this machine has, with ``pid`` moved into it.

    Each directory goes into ``made`` as soon as it exists, so the teardown removes it even when a later one fails.
    """
    for hierarchy in CGROUP_HIERARCHIES:
        root = CGROUP_ROOT / hierarchy
        if not (root / "cgroup.procs").exists():
            continue
        directory = root / name
        directory.mkdir()
        made.append(directory)
        (directory / "cgroup.procs").write_text(f"{pid}\n")


def remove_cgroups(directories: Iterable[Path], timeout: float) -> list[str]:
    """rmdir each cgroup; returns one error for each still there at the deadline.

    A cgroup whose last process was just killed refuses until the kernel has finished with it: retry until then.
    """
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    for directory in directories:
        while True:
            try:
                directory.rmdir()
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    errors.append(f"cannot remove {directory}: {error}")
                    break
                time.sleep(0.02)
    return errors


# ---- kernel state in a namespace ----------------------------------------------------------------------------


def prime_tables(ns: NetNamespace) -> None:
    """Create the iptables tables and base chains a fault touches before the "before" snapshot.

    The first iptables command in a namespace creates them and none removes them; they hold no rule and
    accept everything, as in any namespace whose network was ever set up with iptables.
    """
    for binary in ("iptables", "ip6tables"):
        for table, chain in (("filter", "INPUT"), ("filter", "OUTPUT"), ("mangle", "POSTROUTING")):
            ns.run(binary, "-w", "5", "-t", table, "-I", chain, "-j", "ACCEPT")
            ns.run(binary, "-w", "5", "-t", table, "-D", chain, "-j", "ACCEPT")


def kernel_state(ns: NetNamespace) -> dict[str, str]:
    """iptables, nft, ipset and tc in one namespace, with traffic counters and hash seeds left out.

    Equal before a fault and after its recovery when the fault left nothing; equal between two injections of
    the same fault (a set made again gets a new random seed, its rules new counters).
    """
    state: dict[str, str] = {}
    for command in ("iptables-save", "ip6tables-save"):
        text = ns.run(command).stdout
        state[command] = "\n".join(
            re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#")
        )
    state["nft"] = re.sub(r"packets \d+ bytes \d+", "", ns.run("nft", "list", "ruleset").stdout)
    state["ipset"] = re.sub(r" initval 0x[0-9a-f]+", "", ns.run("ipset", "list").stdout)
    state["qdisc"] = ns.run("tc", "-j", "qdisc", "show").stdout
    for link in json.loads(ns.run("ip", "-j", "link", "show").stdout):
        state[f"class {link['ifname']}"] = ns.run("tc", "class", "show", "dev", link["ifname"]).stdout
        state[f"filter {link['ifname']}"] = ns.run("tc", "filter", "show", "dev", link["ifname"]).stdout
    return state
