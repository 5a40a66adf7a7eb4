"""Fixtures for the agent core's node tests, and the child-process agent the crash tests kill.

``AgentLab``: a network namespace of our own with a target process inside it, placed in cgroups of our
own (every v1 hierarchy we use plus the unified v2 one), and a residue snapshot of everything a fault
plan may leave behind (links, qdiscs, classes, filters, iptables, ipsets, tagged processes).

Run as a script (``python agent_fixtures.py '<json>'``), this module is an agent process: it opens the
journal, reconciles, then applies or recovers the sample injection, and it kills itself with SIGKILL
right after event number ``crash_after`` (an event is a journal append or a completed action), or
right after a spawned process was forked and stopped, before it was placed (``crash_in_spawn``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
if str(SRC) not in sys.path:  # the child agent runs with the venv's python; make sure it sees src/
    sys.path.insert(0, str(SRC))

from lab_parts import make_cgroups, processes, remove_cgroups, running  # noqa: E402

from faultmesh.agent import exec as agent_exec  # noqa: E402
from faultmesh.agent.exec import Executor  # noqa: E402
from faultmesh.agent.injections import Engine, InjectionRequest, PlannerRegistry  # noqa: E402
from faultmesh.agent.journal import Journal  # noqa: E402
from faultmesh.kinds.plan import Exec, Namespace, Plan, Probe, Reap, Spawn, Step, Target  # noqa: E402

NET: tuple[Namespace, ...] = ("net",)
SAMPLE_KIND = "FmtSample"
SPAWN_KIND = "FmtSpawn"


# ------------------------------------------------------------------------------------ plans from real commands


def sample_plan(spec: Mapping[str, Any], target: Target) -> Plan:
    """A plan touching every kind of kernel state a fault uses: a link, a tbf qdisc, an ipset, an
    iptables chain that drops, a rule sending the set's sources to it, and a spawned process."""
    tag = spec["tag"]
    device, peer, ipset, chain = f"fm{tag}", f"fm{tag}p", f"fmt-{tag}", f"FMT-{tag}"
    rule = ("INPUT", "-m", "set", "--match-set", ipset, "src", "-j", chain)
    return Plan(SAMPLE_KIND, target, (
        Step("link", Exec(("ip", "link", "add", device, "type", "veth", "peer", "name", peer), NET),
             Exec(("ip", "link", "del", device), NET, ("Cannot find device",)),
             Probe(("ip", "-o", "link", "show", device), device, NET, ("does not exist",))),
        Step("tbf", Exec(("tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", "1mbit", "burst", "32kb",
                          "latency", "50ms"), NET),
             Exec(("tc", "qdisc", "del", "dev", device, "root"), NET,
                  ("Cannot find device", "handle of zero", "No such file or directory")),
             Probe(("tc", "qdisc", "show", "dev", device), "tbf", NET, ("Cannot find device",))),
        Step("ipset", Exec(("ipset", "create", ipset, "hash:ip"), NET),
             Exec(("ipset", "destroy", ipset), NET, ("does not exist",)),
             Probe(("ipset", "list", "-n"), ipset, NET)),
        Step("chain", Exec(("iptables", "-w", "-N", chain), NET),
             Exec(("iptables", "-w", "-X", chain), NET, ("No chain/target/match",)),
             Probe(("iptables", "-w", "-S"), f"-N {chain}", NET)),
        Step("drop", Exec(("iptables", "-w", "-A", chain, "-j", "DROP"), NET),
             Exec(("iptables", "-w", "-D", chain, "-j", "DROP"), NET, ("Bad rule", "No chain/target/match")),
             Probe(("iptables", "-w", "-S"), f"-A {chain} -j DROP", NET)),
        Step("rule", Exec(("iptables", "-w", "-A", *rule), NET),
             Exec(("iptables", "-w", "-D", *rule), NET, ("Bad rule", "No chain/target/match", "doesn't exist")),
             Probe(("iptables", "-w", "-S", "INPUT"), f"--match-set {ipset} src -j {chain}", NET,
                   ("No chain/target/match",))),
        Step("sleeper", Spawn(("sleep", "3600"), "sleeper"), Reap("sleeper"), Probe((), "", process="sleeper")),
    ))


def spawn_plan(spec: Mapping[str, Any], target: Target) -> Plan:
    """Spawned workers only (``argv`` lists), each placed in the target's cgroups (and namespaces)."""
    steps = []
    for index, argv in enumerate(spec["commands"]):
        name = f"worker{index}"
        steps.append(Step(name, Spawn(tuple(argv), name, tuple(spec.get("namespaces", ()))), Reap(name),
                          Probe((), "", process=name)))
    return Plan(SPAWN_KIND, target, tuple(steps))


def planners() -> PlannerRegistry:
    registry = PlannerRegistry()
    registry.register(SAMPLE_KIND, sample_plan)
    registry.register(SPAWN_KIND, spawn_plan)
    return registry


# ------------------------------------------------------------------------------------ the lab


def _run(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


_TCP_CHECK = """
import socket
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
client = socket.socket()
client.settimeout(1.0)
try:
    client.connect(server.getsockname())
    print("open")
except OSError:
    print("blocked")
"""


@dataclass
class AgentLab:
    """A netns with a target process in cgroups of its own; everything here is removed at the end."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    target_process: subprocess.Popen[bytes] | None = None
    cgroups: list[Path] = field(default_factory=list)
    #: Set by a test that deleted the namespace itself (to show a change dies with it).
    netns_deleted: bool = False

    @property
    def netns(self) -> str:
        return f"fmt-ag-{self.suffix}"

    @property
    def target_pid(self) -> int:
        assert self.target_process is not None
        return self.target_process.pid

    @property
    def target(self) -> Target:
        return Target(f"process://{self.target_pid}", "default/fmt-target")

    def start(self) -> None:
        _run("ip", "netns", "add", self.netns)
        _run("ip", "-n", self.netns, "link", "set", "lo", "up")
        # iptables-nft makes the filter table (empty, policies ACCEPT) on first use and never removes it;
        # make it now, as any netns that ever saw iptables has it, so it does not count as a residue.
        self.sh("iptables", "-w", "-N", "FMT-INIT")
        self.sh("iptables", "-w", "-X", "FMT-INIT")
        self.target_process = subprocess.Popen(["ip", "netns", "exec", self.netns, "sleep", "3600"])
        make_cgroups(f"fmt-ag-{self.suffix}", self.target_pid, self.cgroups)

    def sh(self, *argv: str, check: bool = True) -> str:
        """Run a command inside the lab's namespace."""
        return _run("ip", "netns", "exec", self.netns, *argv, check=check)

    def tcp_blocked(self) -> bool:
        """Does a TCP connection from 127.0.0.1 to a listener on 127.0.0.1 in the lab time out?"""
        return self.sh(sys.executable, "-c", _TCP_CHECK).strip() == "blocked"

    def tagged_processes(self) -> list[int]:
        """Live processes spawned for this lab's injections: FAULTMESH_SPAWN names the lab's suffix, or
        they share a process group with one that does (stress-ng's workers overwrite their environment)."""
        everything = processes()
        tagged_groups = {p.pgid for p in everything if p.spawn_tag is not None and self.suffix in p.spawn_tag}
        return sorted(p.pid for p in everything if p.pgid in tagged_groups)

    def cgroup_members(self) -> dict[str, list[int]]:
        return {str(d): sorted(int(p) for p in (d / "cgroup.procs").read_text().split()) for d in self.cgroups}

    def residue(self) -> dict[str, Any]:
        """Everything a plan could leave behind, in a form that compares equal when nothing changed."""
        links = json.loads(self.sh("ip", "-j", "link", "show"))
        devices = [link["ifname"] for link in links]
        return {
            "links": sorted((link["ifname"], link.get("qdisc", "")) for link in links),
            "qdiscs": json.loads(self.sh("tc", "-j", "qdisc", "show")),
            "classes": {d: self.sh("tc", "class", "show", "dev", d) for d in devices},
            "filters": {d: self.sh("tc", "filter", "show", "dev", d) for d in devices},
            "iptables": [line for line in self.sh("iptables-save").splitlines() if not line.startswith("#")],
            "ipsets": self.sh("ipset", "list", "-n").split(),
            "processes": self.tagged_processes(),
            "cgroups": self.cgroup_members(),
        }

    def close(self) -> list[str]:
        errors: list[str] = []
        if self.target_process is not None:
            self.target_process.kill()
            self.target_process.wait()
        for pid in self.tagged_processes():
            errors.append(f"spawned process {pid} still alive at teardown")
            os.kill(pid, signal.SIGKILL)
        errors += remove_cgroups(self.cgroups, timeout=5)
        result = subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True, text=True)
        if result.returncode != 0 and not self.netns_deleted:
            errors.append(f"ip netns del {self.netns}: {result.stderr.strip()}")
        return errors


@pytest.fixture(name="agent_lab")
def agent_lab_fixture() -> Iterator[AgentLab]:
    with running(AgentLab()) as lab:
        yield lab
    assert lab.netns not in _run("ip", "netns", "list")


# ------------------------------------------------------------------------------------ child agent


def sample_request(lab_suffix: str, target: Target, ttl: float, injection: str = "sample") -> InjectionRequest:
    return InjectionRequest(f"{injection}-{lab_suffix}", SAMPLE_KIND, {"tag": lab_suffix}, target, "fmt-test", ttl)


def run_child_agent(arguments: Mapping[str, Any], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run this module as an agent process; returns its result (returncode -9 when it killed itself)."""
    return subprocess.run([sys.executable, str(Path(__file__)), json.dumps(arguments)], check=False,
                          capture_output=True, text=True, timeout=timeout)


async def _child(arguments: Mapping[str, Any]) -> None:
    crash_after = arguments.get("crash_after")
    offset = float(arguments.get("clock_offset", 0.0))
    events = 0

    def tick() -> None:
        nonlocal events
        events += 1
        if crash_after is not None and events >= crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    journal = Journal(arguments["journal"])
    executor = Executor(settle=0.05)
    engine = Engine(journal, executor, planners(), wall=lambda: time.time() + offset, retry_initial=0.05)
    await engine.start()  # reconcile_at_start runs here, before any crash point counts

    original_append = journal.append

    def append(record: Any) -> None:
        original_append(record)
        tick()

    journal.append = append  # type: ignore[method-assign]
    original_run = executor.run

    async def run(action: Any, target: Target, scope: Any) -> Any:
        result = await original_run(action, target, scope)
        tick()
        return result

    executor.run = run  # type: ignore[method-assign]
    if arguments.get("crash_in_spawn"):
        def die(*_: Any) -> None:  # the spawned process is forked and stopped, not placed yet
            os.kill(os.getpid(), signal.SIGKILL)
        agent_exec.move_to_cgroups = die  # type: ignore[assignment]

    request = sample_request(arguments["suffix"], Target(f"process://{arguments['target_pid']}"),
                             float(arguments.get("ttl", 600)))
    mode = arguments["mode"]
    if mode == "apply":
        await engine.apply(request)
    elif mode == "recover":
        await engine.recover(request.id, "recovered by the test")
    elif mode == "halt":
        await engine.halt("halted by the test")
    for view in engine.list():
        print(json.dumps({"id": view.id, "phase": view.phase, "reason": view.reason, "error": view.last_error}))
    await engine.close()


if __name__ == "__main__":
    asyncio.run(_child(json.loads(sys.argv[1])))
