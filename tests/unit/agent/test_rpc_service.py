"""The gRPC service end to end on loopback (no root): request checks → status codes, and the happy path.

The faults here are files: a planner registered for the test creates a marker file, its undo removes it,
and its probe lists the directory, so the real engine, journal and executor run without privileges.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from faultmesh.agent.injections import PlannerRegistry
from faultmesh.agent.main import AgentConfig, RunningAgent, running_agent
from faultmesh.agent.rpc.client import AgentClient, AgentError, Injection, TargetRef
from faultmesh.agent.runtime import RuntimeConfig
from faultmesh.kinds.plan import Exec, Plan, Probe, Step, Target

KIND = "FileMarker"
OWNER = "controller-0"


def marker_planner(spec: Mapping[str, Any], target: Target) -> Plan:
    """One step: touch <dir>/<name>; undo rm -f; probe: is the name listed? ``fail`` makes the apply fail."""
    name = spec.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: {name!r} is not a plain file name")
    directory = str(target.facts["dir"])
    path = f"{directory}/{name}"
    apply = Exec(("false",)) if spec.get("fail") else Exec(("touch", path))
    step = Step(f"marker {name}", apply=apply, undo=Exec(("rm", "-f", path)), probe=Probe(("ls", directory), name))
    return Plan(KIND, target, (step,))


def registry() -> PlannerRegistry:
    planners = PlannerRegistry()
    planners.register(KIND, marker_planner)
    return planners


AgentBody = Callable[[RunningAgent, AgentClient, Path], Awaitable[None]]


def run(tmp_path: Path, body: AgentBody) -> None:
    async def main() -> None:
        markers = tmp_path / "markers"
        markers.mkdir()
        config = AgentConfig(tls=None, insecure=True, listen="127.0.0.1:0", journal=tmp_path / "journal.jsonl",
                             metrics="127.0.0.1:0", grace=1.0)
        async with running_agent(config, registry()) as agent, AgentClient(agent.address, None) as client:
            await body(agent, client, markers)

    asyncio.run(main())


async def apply_marker(client: AgentClient, markers: Path, injection_id: str = "ns/exp/uid/rec", *,
                       name: str = "m1", ttl: float = 30.0, owner: str = OWNER, **spec: Any) -> Injection:
    target = TargetRef(f"process://{os.getpid()}", "ns/pod", {"dir": str(markers)})
    return await client.apply(injection_id, owner, KIND, {"name": name, **spec}, target, ttl)


async def refused(call: Awaitable[Any]) -> AgentError:
    with pytest.raises(AgentError) as caught:
        await call
    return caught.value


def scrape(agent: RunningAgent) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_apply_list_renew_recover(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        applied = await apply_marker(client, markers, ttl=20)
        assert (applied.phase, applied.verified, applied.errors) == ("Injected", True, ())
        assert (markers / "m1").exists()
        assert applied.target.facts == {"dir": str(markers)}
        assert applied.lease_expires_at == pytest.approx(time.time() + 20, abs=5)

        listed = await client.list()
        assert [(i.injection_id, i.kind, i.phase, i.owner) for i in listed] == [("ns/exp/uid/rec", KIND, "Injected",
                                                                                 OWNER)]
        assert await client.list(owner="someone-else") == []

        renewal = await client.renew_lease(OWNER, ttl_seconds=120)
        assert renewal.renewed == ("ns/exp/uid/rec",)
        assert renewal.lease_expires_at == pytest.approx(time.time() + 120, abs=5)

        again = await apply_marker(client, markers, ttl=20)  # idempotent: same id, same spec
        assert again.phase == "Injected"

        recovered = await client.recover("ns/exp/uid/rec", reason="experiment deleted")
        assert (recovered.phase, recovered.verified, recovered.reason) == ("Recovered", True, "experiment deleted")
        assert recovered.lease_expires_at == 0
        assert not (markers / "m1").exists()

        health = await client.health()
        assert (health.serving, health.halted, health.active_injections) == (True, False, 0)
        assert health.journal_bytes > 0 and health.journal_records > 0

    run(tmp_path, body)


def test_bad_requests_answer_invalid_argument_naming_the_field(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        target = TargetRef(f"process://{os.getpid()}")
        spec = {"selector": {}, "mode": "all", "action": "delay", "delay": {"latency": "10x"}}
        error = await refused(client.apply("a", OWNER, "NetworkChaos", spec, target, 30))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.message.startswith('spec_json.delay.latency: "10x" is not a duration')

        error = await refused(client.apply("a", OWNER, KIND, "{not json", target, 30))
        assert (error.code, error.message.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "spec_json")

        error = await refused(apply_marker(client, markers, name="../etc"))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.message == "spec_json: name: '../etc' is not a plain file name"

        error = await refused(client.apply("", "", KIND, {"name": "x"}, TargetRef("nowhere"), -1))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        for field in ("injection_id: is required", "owner: is required", "target.container_id:",
                      "lease_ttl_seconds: -1.0 must be greater than 0"):
            assert field in error.message

        error = await refused(client.renew_lease(OWNER, ttl_seconds=30, injection_ids=[]))
        assert error.message == "injection_ids: name at least one injection, or set all"
        assert not list(markers.iterdir())
        assert await client.list() == []

    run(tmp_path, body)


def test_unknown_things_are_not_found_and_missing_planners_unimplemented(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        error = await refused(client.recover("no/such/injection"))
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert error.message.startswith("injection_id: ")

        error = await refused(client.apply("b", OWNER, KIND, {"name": "b"}, TargetRef("process://999999999",
                                                                                      facts={"dir": "/tmp"}), 30))
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert error.message.startswith("target.container_id: process://999999999")

        error = await refused(client.renew_lease(OWNER, 30, injection_ids=["never-applied"]))
        assert error.code == grpc.StatusCode.NOT_FOUND

        stress = {"selector": {}, "mode": "all", "stressors": {"cpu": {"workers": 1}}}
        error = await refused(client.apply("c", OWNER, "StressChaos", stress, TargetRef(f"process://{os.getpid()}"),
                                           30))
        assert (error.code, error.message) == (grpc.StatusCode.UNIMPLEMENTED,
                                               "kind: StressChaos has no planner on this agent")

    run(tmp_path, body)


def test_conflicts_and_foreign_leases(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        await apply_marker(client, markers, "x", name="one")
        error = await refused(apply_marker(client, markers, "x", name="two"))
        assert error.code == grpc.StatusCode.ALREADY_EXISTS
        assert not (markers / "two").exists()

        error = await refused(client.renew_lease("intruder", 30, injection_ids=["x"]))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert "intruder does not own x (owned by controller-0)" in error.message

        renewal = await client.renew_lease(OWNER, 30, injection_ids=["x", "gone"])
        assert (renewal.renewed, renewal.missing) == (("x",), ("gone",))

    run(tmp_path, body)


def test_a_failed_apply_is_an_answer_not_an_rpc_error(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        failed = await apply_marker(client, markers, "f", name="broken", fail=True)
        assert (failed.phase, failed.verified) == ("Failed", False)
        assert any("exit 1" in error for error in failed.errors), failed.errors
        assert not list(markers.iterdir())

    run(tmp_path, body)


def test_halt_recovers_everything_and_refuses_new_faults_until_released(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        await apply_marker(client, markers, "h1", name="h1")
        await apply_marker(client, markers, "h2", name="h2")
        halt = await client.halt()
        assert halt.halted
        assert sorted((i.injection_id, i.phase, i.verified) for i in halt.recovered) == [
            ("h1", "Recovered", True), ("h2", "Recovered", True)]
        assert not list(markers.iterdir())

        error = await refused(apply_marker(client, markers, "h3", name="h3"))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "halted" in error.message
        assert (await client.health()).halted

        assert not (await client.halt(release=True)).halted
        assert (await apply_marker(client, markers, "h3", name="h3")).phase == "Injected"

    run(tmp_path, body)


def test_internal_errors_carry_one_line_and_no_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        def broken() -> list[Any]:
            raise RuntimeError("journal on fire\nTraceback (most recent call last):\n  File x")

        monkeypatch.setattr(agent.engine, "list", broken)
        error = await refused(client.list())
        assert error.code == grpc.StatusCode.INTERNAL
        assert error.message == "List failed: RuntimeError: journal on fire Traceback (most recent call last): File x"
        assert "\n" not in error.message

    run(tmp_path, body)


def test_lease_expiry_recovers_and_is_counted(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        await apply_marker(client, markers, "short", name="short", ttl=0.5)
        deadline = time.monotonic() + 15
        while (markers / "short").exists() or (await client.list())[0].phase != "Recovered":
            assert time.monotonic() < deadline, "the lease did not expire"
            await asyncio.sleep(0.1)
        (listed,) = await client.list()
        assert (listed.reason, listed.verified) == ("lease expired", True)
        text = scrape(agent)  # counted as it happened: no RPC since the expiry refreshed anything
        assert f'faultmesh_agent_lease_expiries_total{{kind="{KIND}"}} 1.0' in text
        assert f'faultmesh_agent_injections{{kind="{KIND}",phase="Recovered"}} 1.0' in text

    run(tmp_path, body)


def test_metrics_count_rpcs_and_injections(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        await apply_marker(client, markers, "m", name="m")
        await refused(client.recover("nope"))
        text = scrape(agent)
        assert f'faultmesh_agent_injections{{kind="{KIND}",phase="Injected"}} 1.0' in text
        assert f'faultmesh_agent_injections{{kind="{KIND}",phase="Injecting"}}' not in text
        assert 'faultmesh_agent_rpc_duration_seconds_count{code="OK",method="Apply"} 1.0' in text
        assert 'faultmesh_agent_rpc_duration_seconds_count{code="NOT_FOUND",method="Recover"} 1.0' in text
        assert f'faultmesh_agent_injection_transitions_total{{kind="{KIND}",phase="Injected"}} 1.0' in text
        records = sum(1 for line in (agent.config.journal).read_text().splitlines() if line.strip())
        assert f"faultmesh_agent_journal_records {float(records)}" in text
        assert f"faultmesh_agent_journal_size_bytes {float(agent.config.journal.stat().st_size)}" in text

    run(tmp_path, body)


def test_spec_goes_to_the_engine_in_wire_form(tmp_path: Path) -> None:
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        await client.apply("w", OWNER, KIND, json.dumps({"name": "w"}),
                           TargetRef(f"process://{os.getpid()}", facts={"dir": str(markers)}), 30)
        assert dict(agent.engine.state.injections["w"].spec) == {"name": "w"}

    run(tmp_path, body)


def test_every_transition_is_counted_even_between_rpcs(tmp_path: Path) -> None:
    """Injecting and Recovering last only inside one Apply or Recover: only the engine's events see them."""
    async def body(agent: RunningAgent, client: AgentClient, markers: Path) -> None:
        await apply_marker(client, markers, "t", name="t")
        await client.recover("t")
        await apply_marker(client, markers, "t", name="t")  # the same id again: a new life, counted again
        text = scrape(agent)
        for phase, count in (("Injecting", 2), ("Injected", 2), ("Recovering", 1), ("Recovered", 1)):
            assert f'faultmesh_agent_injection_transitions_total{{kind="{KIND}",phase="{phase}"}} {count}.0' in text
        assert f'faultmesh_agent_injections{{kind="{KIND}",phase="Injected"}} 1.0' in text
        assert f'faultmesh_agent_injections{{kind="{KIND}",phase="Recovered"}}' not in text
        await client.halt()
        assert "faultmesh_agent_halted 1.0" in scrape(agent)
        await client.halt(release=True)
        assert "faultmesh_agent_halted 0.0" in scrape(agent)

    run(tmp_path, body)


def test_an_unreachable_runtime_is_unavailable_not_a_missing_target(tmp_path: Path) -> None:
    async def main() -> None:
        config = AgentConfig(tls=None, insecure=True, listen="127.0.0.1:0", journal=tmp_path / "journal.jsonl",
                             grace=1.0, runtime=RuntimeConfig(runtime="containerd", socket=tmp_path / "none.sock"))
        async with running_agent(config, registry()) as agent, AgentClient(agent.address, None) as client:
            error = await refused(client.apply("u", OWNER, KIND, {"name": "u"},
                                               TargetRef("containerd://abc", facts={"dir": str(tmp_path)}), 30))
            assert error.code == grpc.StatusCode.UNAVAILABLE
            assert error.message.startswith("target.container_id: containerd://abc: cannot resolve: ")
            assert "none.sock does not exist" in error.message
            assert await client.list() == []

    asyncio.run(main())
