"""StressChaos on real containerd containers: the stress counts against the target's cgroup, then is gone.

Plans come from the planner and run through the agent's executor with the containerd runtime client, as
in the agent. The test process itself moves into a cgroup of its own for the test, standing for the
agent's cgroup: what the spawned stress-ng burns must show up in the target container, not there, and
not in an idle sibling container.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testbed.containerd import Container, Containerd

from faultmesh.agent.exec import Executor, Scope
from faultmesh.agent.runtime import CgroupPaths, RuntimeConfig, Runtimes, cgroup_paths
from faultmesh.api.stresschaos import StressChaosSpec
from faultmesh.kinds.plan import Plan, Target
from faultmesh.kinds.stress import plan_stress

MakeContainer = Callable[..., Container]
#: How long the CPU stress is measured.
WINDOW = 2.0
MiB = 1024 * 1024


@dataclass
class Agent:
    """The executor and runtime clients the agent would use, driven the way its engine drives them."""

    runtimes: Runtimes
    executor: Executor

    def apply(self, plan: Plan, scope: Scope) -> None:
        asyncio.run(self._apply(plan, scope))

    def recover(self, plan: Plan, scope: Scope) -> None:
        asyncio.run(self._recover(plan, scope))

    async def _apply(self, plan: Plan, scope: Scope) -> None:
        scope.location = await self.executor.locate(plan.target)
        for step in plan.steps:
            await self.executor.run(step.apply, plan.target, scope)
        for step in plan.steps:
            assert step.probe is not None
            verdict = await self.executor.probe(step.probe, plan.target, scope)
            assert verdict.state == "present", f"{step.name}: {verdict}"

    async def _recover(self, plan: Plan, scope: Scope) -> None:
        for step in reversed(plan.steps):
            assert step.undo is not None
            await self.executor.run(step.undo, plan.target, scope)
        for step in plan.steps:
            assert step.probe is not None
            verdict = await self.executor.probe(step.probe, plan.target, scope)
            assert verdict.state == "absent", f"{step.name}: {verdict}"


@pytest.fixture
def agent(containerd: Containerd) -> Iterator[Agent]:
    config = RuntimeConfig(runtime="containerd", socket=containerd.socket,
                           containerd_namespace=containerd.namespace)
    with Runtimes(config) as runtimes:
        yield Agent(runtimes, Executor(resolve_pid=runtimes.resolve, kill_container=runtimes.kill_async))


@pytest.fixture
def agent_cgroup() -> Iterator[CgroupPaths]:
    """This test process in a CPU-accounting cgroup of its own (removed afterwards), standing for the agent's."""
    own = cgroup_paths(os.getpid())
    parent = own.v1.get("cpuacct") or own.unified
    assert parent is not None, "no cpuacct (v1) or cgroup2 hierarchy to account the agent's CPU in"
    child = parent / f"fmt-agent-{secrets.token_hex(3)}"
    child.mkdir()
    try:
        (child / "cgroup.procs").write_text(f"{os.getpid()}\n")
        paths = cgroup_paths(os.getpid())
        assert child in paths.directories()
        yield paths
    finally:
        (parent / "cgroup.procs").write_text(f"{os.getpid()}\n")
        child.rmdir()


def _spec(**fields: Any) -> StressChaosSpec:
    return StressChaosSpec.model_validate({"mode": "all", "selector": {"namespaces": ["default"]}, **fields})


@dataclass(frozen=True)
class Proc:
    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    pid_ns: int
    oom_score_adj: int


def _processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                found.append(Proc(int(entry.name), stat[stat.index("(") + 1:stat.rindex(")")], fields[0],
                                  int(fields[1]), int(fields[2]), os.stat(entry / "ns" / "pid").st_ino,
                                  int((entry / "oom_score_adj").read_text())))
            except (OSError, ValueError):
                continue
    return found


def _stress_ng(scope: Scope) -> list[Proc]:
    """Every live stress-ng process a spawn of ``scope`` started (workers included: same process group).

    Zombies are left out (dead); :func:`test_recovery_leaves_no_zombie_stress_ng` checks none are left.
    """
    groups = {spawned.pgid for spawned in scope.processes.values()}
    return [p for p in _processes() if p.comm.startswith("stress-ng") and p.pgid in groups and p.state != "Z"]


def _all_stress_ng() -> set[int]:
    return {p.pid for p in _processes() if p.comm.startswith("stress-ng") and p.state != "Z"}


def _in_cgroup(directory: Path) -> set[int]:
    return {int(pid) for pid in (directory / "cgroup.procs").read_text().split()}


def _stress_temp_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("tmp-stress-ng-*")}


def test_cpu_stress_counts_against_the_target_container_only(
    containerd: Containerd, make_container: MakeContainer, agent: Agent, agent_cgroup: CgroupPaths
) -> None:
    busy, idle = make_container(name="busy"), make_container(name="idle")
    busy_cg, idle_cg = cgroup_paths(busy.pid), cgroup_paths(idle.pid)
    target = Target(f"containerd://{busy.id}", "default/busy/app")
    plan = plan_stress(_spec(stressors={"cpu": {"workers": 1, "load": 100}}), target)
    scope = Scope(tag=f"fmt-stress-{secrets.token_hex(3)}")
    temp_before, stress_before = _stress_temp_dirs(), _all_stress_ng()

    agent.apply(plan, scope)
    try:
        workers = _stress_ng(scope)
        assert scope.processes["stress-cpu"].pid in {p.pid for p in workers}
        assert len(workers) >= 2  # stress-ng and its worker
        container_ns = os.stat(f"/proc/{busy.pid}/ns/pid").st_ino
        for process in workers:  # every stress-ng process sits in the container's cgroups and PID namespace
            assert cgroup_paths(process.pid).directories() == busy_cg.directories()
            assert process.pid_ns == container_ns
        before = (busy_cg.cpu_usage_ns(), idle_cg.cpu_usage_ns(), agent_cgroup.cpu_usage_ns())
        time.sleep(WINDOW)
        after = (busy_cg.cpu_usage_ns(), idle_cg.cpu_usage_ns(), agent_cgroup.cpu_usage_ns())
    finally:
        agent.recover(plan, scope)

    busy_s, idle_s, agent_s = ((a - b) / 1e9 for a, b in zip(after, before, strict=True))
    print(f"\nCPU seconds over {WINDOW:g} s: target {busy_s:.3f}, idle sibling {idle_s:.4f}, agent {agent_s:.4f}")
    assert busy_s > 0.2 * WINDOW, "the target's cgroup did not get the stress"
    assert busy_s > 20 * max(idle_s, 0.001), "the idle sibling got a share of the stress"
    assert busy_s > 20 * max(agent_s, 0.001), "the agent's cgroup was charged for the stress"
    assert _stress_ng(scope) == []
    assert _all_stress_ng() <= stress_before
    assert _in_cgroup(busy_cg.directories()[0]) == {busy.pid}
    assert _stress_temp_dirs() == temp_before


def _zombies(pids: set[int], pid_ns: int) -> list[Proc]:
    """Zombies among ``pids`` or anywhere in the PID namespace ``pid_ns``: dead, yet never waited for."""
    return [p for p in _processes() if p.state == "Z" and (p.pid in pids or p.pid_ns == pid_ns)]


@pytest.mark.parametrize("stressors", [{"cpu": {"workers": 2, "load": 50}},
                                       {"memory": {"workers": 2, "size": "16MiB"}}], ids=["cpu", "memory"])
def test_recovery_leaves_no_zombie_stress_ng(containerd: Containerd, make_container: MakeContainer, agent: Agent,
                                             stressors: dict[str, Any]) -> None:
    # Signalled all at once, a parent (nsenter, stress-ng) can die before its children, which are then
    # re-parented to an init -- the node's, or the container's busybox sleep, which never waits -- as zombies.
    victim = make_container(name="zombies")
    target = Target(f"containerd://{victim.id}", "default/zombies/app")
    plan = plan_stress(_spec(stressors=stressors), target)
    scope = Scope(tag=f"fmt-stress-{secrets.token_hex(3)}")
    container_ns = os.stat(f"/proc/{victim.pid}/ns/pid").st_ino
    agent.apply(plan, scope)
    try:
        spawned = {p.pid for p in _processes() if p.pgid in {s.pgid for s in scope.processes.values()}}
        assert len(spawned) >= 3, "nsenter, stress-ng and its workers"
    finally:
        agent.recover(plan, scope)
    # Reaped, not merely dead: each was waited for by its parent before that parent was signalled.
    assert _zombies(spawned, container_ns) == []
    assert not [p for p in _processes() if p.pid in spawned], "a spawned process outlived recovery"


def test_memory_stress_raises_the_containers_memory_by_the_size(
    containerd: Containerd, make_container: MakeContainer, agent: Agent
) -> None:
    size = 64 * MiB
    target_container = make_container(name="mem")
    memory = cgroup_paths(target_container.pid)
    target = Target(f"containerd://{target_container.id}", "default/mem/app")
    spec = _spec(stressors={"memory": {"workers": 2, "size": f"{size // MiB}MiB", "oomScoreAdj": 200}})
    plan = plan_stress(spec, target)
    scope = Scope(tag=f"fmt-stress-{secrets.token_hex(3)}")
    baseline = memory.memory_usage_bytes()

    agent.apply(plan, scope)
    try:
        deadline = time.monotonic() + 30
        held = memory.memory_usage_bytes() - baseline
        while held < 0.95 * size and time.monotonic() < deadline:  # the workers touch their pages once
            time.sleep(0.1)
            held = memory.memory_usage_bytes() - baseline
        time.sleep(0.5)
        held = memory.memory_usage_bytes() - baseline
        workers = _stress_ng(scope)
    finally:
        agent.recover(plan, scope)
    released = memory.memory_usage_bytes() - baseline

    print(f"\nmemory: asked {size / MiB:.0f} MiB, the container's cgroup rose {held / MiB:.1f} MiB, "
          f"{released / MiB:.1f} MiB above baseline after recovery")
    assert 0.95 * size <= held <= size + 16 * MiB
    assert released < 0.1 * size
    assert len(workers) >= 3  # stress-ng and its two workers
    assert {p.oom_score_adj for p in workers} == {200}
    assert _stress_ng(scope) == []
    assert _in_cgroup(memory.directories()[0]) == {target_container.pid}


def test_stress_dies_with_its_container(containerd: Containerd, make_container: MakeContainer,
                                         agent: Agent) -> None:
    # The workers live in the container's PID namespace: when its init dies, the kernel kills them too.
    doomed = make_container(name="doomed")
    target = Target(f"containerd://{doomed.id}", "default/doomed/app")
    plan = plan_stress(_spec(stressors={"cpu": {"workers": 1, "load": 20}}), target)
    scope = Scope(tag=f"fmt-stress-{secrets.token_hex(3)}")
    agent.apply(plan, scope)
    assert _stress_ng(scope)
    containerd.kill(doomed.id)
    containerd.wait_stopped(doomed.id)
    deadline = time.monotonic() + 10
    while _stress_ng(scope) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stress_ng(scope) == []
    agent.recover(plan, scope)  # recovery of what is already gone is verified all the same
