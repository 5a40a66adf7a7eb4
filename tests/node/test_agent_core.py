"""The agent core on a real kernel: apply/recover with zero residue, kill -9 at every step of apply and
of recover followed by a fresh agent, lease expiry, halt, spawned workers in the target's cgroups, and
undo in the namespace a change was made in after its target died."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agent_fixtures import (
    SPAWN_KIND,
    AgentLab,
    agent_lab_fixture,  # noqa: F401  (the agent_lab fixture)
    planners,
    run_child_agent,
    sample_request,
)

from faultmesh.agent.exec import (
    ExecError,
    ExecTimeoutError,
    Executor,
    Location,
    NamespaceGoneError,
    TargetGoneError,
    clock_ticks,
    namespace_inode,
)
from faultmesh.agent.injections import LEASE_EXPIRED, Engine, HaltedError, InjectionRequest
from faultmesh.agent.journal import Journal
from faultmesh.kinds.plan import Target

LONG_TTL = 600.0
EXPIRED = 10_000.0  # seconds added to a child agent's clock: every lease has run out


def with_engine(journal: Path, scenario: Callable[[Engine], Awaitable[None]]) -> None:
    async def main() -> None:
        engine = Engine(Journal(journal), Executor(settle=0.05), planners(), retry_initial=0.05)
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.close()

    asyncio.run(main())


def views(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, f"child agent failed ({result.returncode}): {result.stderr[-3000:]}"
    return {view["id"]: view for view in map(json.loads, result.stdout.splitlines())}


def blocked(lab: AgentLab) -> bool:
    """Is traffic from 127.0.0.1 dropped in the lab? (Puts the address into the sample's set first.)"""
    lab.sh("ipset", "add", f"fmt-{lab.suffix}", "127.0.0.1", "-exist")
    return lab.tcp_blocked()


def applied_shape(lab: AgentLab) -> dict[str, Any]:
    """The parts of the residue snapshot that show the sample plan fully in place."""
    residue = lab.residue()
    return {
        "link": any(name == f"fm{lab.suffix}" for name, _ in residue["links"]),
        "tbf": any(q["kind"] == "tbf" and q["dev"] == f"fm{lab.suffix}" for q in residue["qdiscs"]),
        "ipset": f"fmt-{lab.suffix}" in residue["ipsets"],
        "chain": f"-A FMT-{lab.suffix} -j DROP" in residue["iptables"],
        "processes": len(residue["processes"]),
    }


FULLY_APPLIED = {"link": True, "tbf": True, "ipset": True, "chain": True, "processes": 1}


# ------------------------------------------------------------------------------------ in-process engine


def test_apply_then_recover_leaves_zero_residue(agent_lab: AgentLab, tmp_path: Path) -> None:
    before = agent_lab.residue()

    async def scenario(engine: Engine) -> None:
        view = await engine.apply(sample_request(agent_lab.suffix, agent_lab.target, LONG_TTL))
        assert view.phase == "injected"
        assert applied_shape(agent_lab) == FULLY_APPLIED
        assert not agent_lab.tcp_blocked()
        assert blocked(agent_lab)
        # The spawned sleeper counts against the target: it is in every one of the target's cgroups.
        (sleeper,) = agent_lab.tagged_processes()
        for members in agent_lab.cgroup_members().values():
            assert sleeper in members and agent_lab.target_pid in members
        view = await engine.recover(view.id, "experiment deleted")
        assert (view.phase, view.reason) == ("recovered", "experiment deleted")

    with_engine(tmp_path / "journal.jsonl", scenario)
    assert agent_lab.residue() == before
    assert not agent_lab.tcp_blocked()


def test_lease_expiry_recovers_within_lease_plus_two_seconds(agent_lab: AgentLab, tmp_path: Path) -> None:
    before = agent_lab.residue()
    ttl = 1.5
    measured: dict[str, float] = {}

    async def scenario(engine: Engine) -> None:
        view = await engine.apply(sample_request(agent_lab.suffix, agent_lab.target, ttl))
        assert applied_shape(agent_lab) == FULLY_APPLIED
        deadline = view.lease_expires + 2.0
        while engine.get(view.id).phase != "recovered" and time.time() < deadline + 5:
            await asyncio.sleep(0.01)
        done = time.time()
        measured["after_expiry"] = done - view.lease_expires
        final = engine.get(view.id)
        assert (final.phase, final.reason) == ("recovered", LEASE_EXPIRED)
        assert done <= deadline, f"recovered {measured['after_expiry']:.2f} s after the lease expired"

    with_engine(tmp_path / "journal.jsonl", scenario)
    print(f"lease {ttl} s: verified recovered {measured['after_expiry']:.3f} s after expiry")
    assert agent_lab.residue() == before


def test_halt_recovers_everything_and_refuses_new_faults(agent_lab: AgentLab, tmp_path: Path) -> None:
    before = agent_lab.residue()

    async def scenario(engine: Engine) -> None:
        await engine.apply(sample_request(agent_lab.suffix, agent_lab.target, LONG_TTL))
        await engine.apply(InjectionRequest(f"spawn-{agent_lab.suffix}", SPAWN_KIND,
                                            {"commands": [["sleep", "3600"], ["sleep", "3601"]]},
                                            agent_lab.target, "fmt-test", LONG_TTL))
        assert len(agent_lab.tagged_processes()) == 3
        halted = await engine.halt("operator halt")
        assert {view.phase for view in halted} == {"recovered"}
        assert agent_lab.residue() == before
        with pytest.raises(HaltedError, match="operator halt"):
            await engine.apply(sample_request(agent_lab.suffix, agent_lab.target, LONG_TTL, "again"))

    with_engine(tmp_path / "journal.jsonl", scenario)
    assert agent_lab.residue() == before


def _cpu_usage(cgroup: Path) -> int:
    return int((cgroup / "cpuacct.usage").read_text())


def test_spawned_stress_runs_in_the_target_cgroups_and_is_reaped(agent_lab: AgentLab, tmp_path: Path) -> None:
    before = agent_lab.residue()
    cpuacct = next(d for d in agent_lab.cgroups if d.parent.name == "cpuacct")

    async def scenario(engine: Engine) -> None:
        start = _cpu_usage(cpuacct)
        commands = [["stress-ng", "--cpu", "1", "--cpu-load", "100", "--timeout", "120"]]
        view = await engine.apply(InjectionRequest(f"stress-{agent_lab.suffix}", SPAWN_KIND,
                                                   {"commands": commands}, agent_lab.target, "fmt-test", LONG_TTL))
        await asyncio.sleep(1.0)
        stressors = agent_lab.tagged_processes()
        assert len(stressors) >= 2, "stress-ng and its worker"
        for members in agent_lab.cgroup_members().values():
            assert set(stressors) <= set(members)
        used = (_cpu_usage(cpuacct) - start) / 1e9
        assert used > 0.3, f"the target's cgroup used only {used:.2f} s of CPU in 1 s of stress"
        await engine.recover(view.id)
        assert agent_lab.tagged_processes() == []

    with_engine(tmp_path / "journal.jsonl", scenario)
    assert agent_lab.residue() == before


def test_spawn_enters_the_target_namespaces(agent_lab: AgentLab, tmp_path: Path) -> None:
    async def scenario(engine: Engine) -> None:
        view = await engine.apply(InjectionRequest(f"ns-{agent_lab.suffix}", SPAWN_KIND,
                                                   {"commands": [["sleep", "3600"]], "namespaces": ["net", "mnt"]},
                                                   agent_lab.target, "fmt-test", LONG_TTL))
        workers = agent_lab.tagged_processes()
        assert workers
        for pid in workers:
            for namespace in ("net", "mnt"):
                assert namespace_inode(pid, namespace) == namespace_inode(agent_lab.target_pid, namespace)
        await engine.recover(view.id)
        assert agent_lab.tagged_processes() == []

    with_engine(tmp_path / "journal.jsonl", scenario)


def test_undo_runs_in_the_namespace_of_a_target_that_died(agent_lab: AgentLab, tmp_path: Path) -> None:
    before = agent_lab.residue()
    before.pop("cgroups")

    async def scenario(engine: Engine) -> None:
        view = await engine.apply(sample_request(agent_lab.suffix, agent_lab.target, LONG_TTL))
        assert agent_lab.target_process is not None
        agent_lab.target_process.kill()
        agent_lab.target_process.wait()
        # The namespace lives on (bind-mounted under /run/netns) and so do the changes in it.
        assert applied_shape(agent_lab) == FULLY_APPLIED
        recovered = await engine.recover(view.id)
        assert recovered.phase == "recovered", recovered

    with_engine(tmp_path / "journal.jsonl", scenario)
    after = agent_lab.residue()
    after.pop("cgroups")
    assert after == before


def test_changes_inside_a_deleted_namespace_count_as_gone(agent_lab: AgentLab, tmp_path: Path) -> None:
    async def scenario(engine: Engine) -> None:
        view = await engine.apply(sample_request(agent_lab.suffix, agent_lab.target, LONG_TTL))
        assert agent_lab.target_process is not None
        agent_lab.target_process.kill()
        agent_lab.target_process.wait()
        subprocess.run(["ip", "netns", "del", agent_lab.netns], check=True)
        agent_lab.netns_deleted = True
        recovered = await engine.recover(view.id)
        assert recovered.phase == "recovered", recovered
        assert agent_lab.tagged_processes() == []  # the sleeper lived outside the namespace: reaped

    with_engine(tmp_path / "journal.jsonl", scenario)


# ------------------------------------------------------------------------------------ kill -9 of the agent


def _crash_apply(lab: AgentLab, journal: Path, crash_after: int | None, **extra: Any) -> int:
    result = run_child_agent({"journal": str(journal), "mode": "apply", "crash_after": crash_after,
                              "target_pid": lab.target_pid, "suffix": lab.suffix, "ttl": LONG_TTL, **extra})
    assert result.returncode in (0, -9), result.stderr[-3000:]
    return result.returncode


def _child(lab: AgentLab, journal: Path, mode: str, **extra: Any) -> subprocess.CompletedProcess[str]:
    return run_child_agent({"journal": str(journal), "mode": mode, "target_pid": lab.target_pid,
                            "suffix": lab.suffix, **extra})


@pytest.mark.slow
def test_kill_9_at_every_step_of_apply_then_a_new_agent_leaves_zero_residue(agent_lab: AgentLab,
                                                                           tmp_path: Path) -> None:
    """After each crash the lease has run out by the time the next agent starts: it must undo it all."""
    before = agent_lab.residue()
    crash_points = 0
    for crash_after in range(1, 200):
        journal = tmp_path / f"apply-{crash_after}" / "journal.jsonl"
        code = _crash_apply(agent_lab, journal, crash_after)
        reconciled = views(_child(agent_lab, journal, "reconcile", clock_offset=EXPIRED))
        assert agent_lab.residue() == before, f"residue after a crash at event {crash_after} of apply"
        assert {view["phase"] for view in reconciled.values()} <= {"recovered"}, reconciled
        if code == 0:
            break
        crash_points += 1
    assert crash_points >= 20, crash_points  # 2 records, then intent + action + result for each of 7 steps


@pytest.mark.slow
def test_kill_9_during_apply_with_a_valid_lease_is_completed_by_the_next_agent(agent_lab: AgentLab,
                                                                             tmp_path: Path) -> None:
    """The owner still wants the fault: the restarted agent must bring it fully back, then recover it."""
    before = agent_lab.residue()
    for crash_after in range(1, 200, 3):  # every third event: the other two are covered by the test above
        journal = tmp_path / f"valid-{crash_after}" / "journal.jsonl"
        code = _crash_apply(agent_lab, journal, crash_after)
        reconciled = views(_child(agent_lab, journal, "reconcile"))
        assert [view["phase"] for view in reconciled.values()] == ["injected"], (crash_after, reconciled)
        assert applied_shape(agent_lab) == FULLY_APPLIED, crash_after
        views(_child(agent_lab, journal, "recover"))
        assert agent_lab.residue() == before, f"residue after a crash at event {crash_after} of apply"
        if code == 0:
            break


@pytest.mark.slow
def test_kill_9_at_every_step_of_recover_then_a_new_agent_leaves_zero_residue(agent_lab: AgentLab,
                                                                             tmp_path: Path) -> None:
    before = agent_lab.residue()
    crash_points = 0
    for crash_after in range(1, 200):
        journal = tmp_path / f"recover-{crash_after}" / "journal.jsonl"
        assert _crash_apply(agent_lab, journal, None) == 0
        assert applied_shape(agent_lab) == FULLY_APPLIED
        result = _child(agent_lab, journal, "recover", crash_after=crash_after)
        assert result.returncode in (0, -9), result.stderr[-3000:]
        # The lease is still valid: only the journalled request to recover says the fault is unwanted.
        reconciled = views(_child(agent_lab, journal, "reconcile"))
        assert agent_lab.residue() == before, f"residue after a crash at event {crash_after} of recover"
        assert [view["phase"] for view in reconciled.values()] in ([], ["recovered"]), reconciled
        if result.returncode == 0:
            break
        crash_points += 1
    assert crash_points >= 20, crash_points


def test_kill_9_between_fork_and_cgroup_placement_leaves_no_process(agent_lab: AgentLab, tmp_path: Path) -> None:
    before = agent_lab.residue()
    journal = tmp_path / "journal.jsonl"
    assert _crash_apply(agent_lab, journal, None, crash_in_spawn=True) == -9
    stopped = agent_lab.tagged_processes()
    assert len(stopped) == 1, "the spawned process waits, stopped, for a placement that never comes"
    views(_child(agent_lab, journal, "reconcile", clock_offset=EXPIRED))
    assert agent_lab.residue() == before


def test_a_reused_namespace_inode_is_not_taken_for_the_old_namespace(tmp_path: Path) -> None:
    """Inode numbers of freed namespaces are reissued (seen here within a second). A journalled
    location must not lead an undo into a newer namespace that merely got the same number."""
    name = f"fmt-ag-decoy-{secrets.token_hex(3)}"
    ticks_before = clock_ticks()
    time.sleep(0.05)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "fmdecoy", "type", "veth", "peer", "name", "fmdecoyp"],
                       check=True)
        decoy = os.stat(f"/run/netns/{name}").st_ino
        # The target's PID is beyond pid_max: it cannot exist, as after the target died.
        untrusted = Location(pid=2**22 + 1, namespaces={"net": decoy}, pid_start_time=1, ticks=ticks_before)

        async def scenario() -> None:
            executor = Executor()
            with pytest.raises(NamespaceGoneError):
                await executor.command(["ip", "link", "del", "fmdecoy"], location=untrusted, namespaces=("net",))
            # The same location, had it recorded this bind mount when it was taken, may use it.
            trusted = Location(untrusted.pid, untrusted.namespaces, 1, ticks_before, (f"/run/netns/{name}",))
            result = await executor.command(["ip", "-o", "link", "show", "fmdecoy"], location=trusted,
                                            namespaces=("net",))
            assert "fmdecoy" in result.stdout

        asyncio.run(scenario())
        links = subprocess.run(["ip", "-n", name, "-o", "link", "show", "fmdecoy"], capture_output=True, text=True,
                               check=False)
        assert "fmdecoy" in links.stdout, "the decoy in the newer namespace was touched"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# ------------------------------------------------------------------------------------ the executor's commands


def _processes_with_argument(argument: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().split(b"\0")
                state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argument.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def test_commands_capture_output_take_stdin_tolerate_and_time_out(agent_lab: AgentLab) -> None:
    marker = f"{secrets.randbelow(10**6) + 10**6}.5"

    async def scenario() -> None:
        executor = Executor()
        location = await executor.locate(agent_lab.target)
        result = await executor.command(["ip", "-o", "link", "show", "lo"], location=location, namespaces=("net",))
        assert "lo:" in result.stdout and result.returncode == 0
        # Inside the target's netns there is only lo: the host's interfaces are not visible.
        assert len(result.stdout.splitlines()) == 1
        echoed = await executor.command(["cat"], stdin="through stdin\n")
        assert echoed.stdout == "through stdin\n"
        with pytest.raises(ExecError) as refused:
            await executor.command(["ip", "link", "del", "fm-none"], location=location, namespaces=("net",))
        assert refused.value.command == "[net] ip link del fm-none"
        assert "Cannot find device" in refused.value.stderr and "Cannot find device" in str(refused.value)
        tolerated = await executor.command(["ip", "link", "del", "fm-none"], location=location,
                                           namespaces=("net",), tolerate=("Cannot find device",))
        assert tolerated.tolerated and tolerated.returncode != 0
        with pytest.raises(ExecTimeoutError, match=r"timed out after 0\.3 s"):
            await executor.command(["sh", "-c", f"sleep {marker} & sleep {marker}; wait"], timeout=0.3)
        assert _processes_with_argument(marker) == []  # the whole process group was killed
        with pytest.raises(TargetGoneError, match="process 4194305 does not exist"):
            await executor.locate(Target("process://4194305"))

    asyncio.run(scenario())
