"""Agent discovery as data (which pod or endpoint serves a node, and why none does), and the pool end to end.

The pool's end-to-end tests run real agents on loopback with mutual TLS (no root: their faults are marker
files, as in tests/unit/agent/test_rpc_service.py) and stand the agent pods' list in for the API server; the
cluster tier (tests/cluster/test_controller_agents.py) finds a real agent DaemonSet through a real API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from faultmesh.agent.injections import PlannerRegistry
from faultmesh.agent.main import AgentConfig, RunningAgent, running_agent
from faultmesh.agent.rpc.client import AgentError, TargetRef
from faultmesh.agent.rpc.tls import Bundle, write_bundle
from faultmesh.controller.agents import (
    AgentEndpoint,
    AgentPool,
    AgentUnavailableError,
    pick_agent_endpoint,
    pick_agent_pod,
)
from faultmesh.controller.kube import Kube
from faultmesh.kinds.plan import Exec, Plan, Probe, Step, Target

SELECTOR = "app.kubernetes.io/component=agent"
SERVER_NAME = "faultmesh-agent.faultmesh.svc"
OWNER = "faultmesh-controller-0"
KIND = "FileMarker"


def agent_pod(name: str, node: str, ip: str = "10.1.0.5", *, ready: bool = True, created: str = "2026-01-01T00:00:00Z",
              host_network: bool = False, host_ip: str = "192.168.0.7", deleting: bool = False,
              waiting: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "faultmesh", "creationTimestamp": created}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T01:00:00Z"
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": metadata,
        "spec": {"nodeName": node, "hostNetwork": host_network},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "hostIP": host_ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "agent", "ready": ready, "state": state}],
        },
    }


# ---- discovery as data --------------------------------------------------------------------------------------


def found(answer: AgentEndpoint | str) -> AgentEndpoint:
    assert isinstance(answer, AgentEndpoint), answer
    return answer


def test_the_ready_pod_on_the_node_is_the_agent_at_its_pod_ip() -> None:
    pods = [agent_pod("agent-a", "node-a", "10.1.0.5"), agent_pod("agent-b", "node-b", "10.1.1.5")]
    assert pick_agent_pod(pods, "node-b", 31767, SELECTOR) == AgentEndpoint("node-b", "faultmesh/agent-b",
                                                                            "10.1.1.5:31767")


def test_a_host_network_agent_is_reached_at_the_node_ip() -> None:
    pods = [agent_pod("agent-a", "node-a", "10.1.0.5", host_network=True, host_ip="192.168.0.7")]
    assert found(pick_agent_pod(pods, "node-a", 31767, SELECTOR)).address == "192.168.0.7:31767"


def test_ipv6_addresses_are_bracketed() -> None:
    pods = [agent_pod("agent-a", "node-a", "fd00::5")]
    assert found(pick_agent_pod(pods, "node-a", 31767, SELECTOR)).address == "[fd00::5]:31767"


def test_during_a_rolling_update_the_newest_ready_pod_serves() -> None:
    pods = [agent_pod("old", "node-a", "10.1.0.5", created="2026-01-01T00:00:00Z"),
            agent_pod("new", "node-a", "10.1.0.9", created="2026-01-02T00:00:00Z")]
    assert found(pick_agent_pod(pods, "node-a", 1, SELECTOR)).pod == "faultmesh/new"
    pods[1] = agent_pod("new", "node-a", "10.1.0.9", created="2026-01-02T00:00:00Z", ready=False)
    assert found(pick_agent_pod(pods, "node-a", 1, SELECTOR)).pod == "faultmesh/old"


def test_why_no_pod_serves_is_said_plainly() -> None:
    assert pick_agent_pod([agent_pod("a", "node-a")], "node-z", 1, f"{SELECTOR} in namespace faultmesh") == (
        f"no agent pod on node node-z (no pod labelled {SELECTOR} in namespace faultmesh runs there)"
    )
    crashing = agent_pod("agent-x", "node-a", ready=False, waiting="CrashLoopBackOff")
    assert pick_agent_pod([crashing], "node-a", 1, SELECTOR) == (
        "the agent pod faultmesh/agent-x is not Ready (container agent CrashLoopBackOff)"
    )
    starting = agent_pod("agent-x", "node-a", ready=False)
    assert pick_agent_pod([starting], "node-a", 1, SELECTOR) == (
        "the agent pod faultmesh/agent-x is not Ready (phase Running; container agent not ready)"
    )
    leaving = agent_pod("agent-x", "node-a", deleting=True)
    assert pick_agent_pod([leaving], "node-a", 1, SELECTOR) == "the agent pod faultmesh/agent-x is terminating"


def endpoint_slice(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "faultmesh-agent-x7k2p", "namespace": "faultmesh"}, "endpoints": list(endpoints)}


def endpoint(node: str, address: str, pod: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "nodeName": node, "conditions": conditions,
            "targetRef": {"kind": "Pod", "namespace": "faultmesh", "name": pod}}


def test_endpoint_slices_name_the_agent_of_each_node() -> None:
    slices = [endpoint_slice(endpoint("node-a", "10.1.0.5", "agent-a", ready=True)),
              endpoint_slice(endpoint("node-b", "10.1.1.5", "agent-b", ready=True, serving=True))]
    assert pick_agent_endpoint(slices, "node-b", 31767, "faultmesh/faultmesh-agent") == AgentEndpoint(
        "node-b", "faultmesh/agent-b", "10.1.1.5:31767")
    # No ready condition at all means "unknown", which the EndpointSlice API says to treat as ready.
    assert isinstance(pick_agent_endpoint([endpoint_slice(endpoint("n", "10.0.0.1", "p"))], "n", 1, "s"),
                      AgentEndpoint)


def test_endpoint_slices_say_why_no_agent_serves() -> None:
    service = "faultmesh/faultmesh-agent"
    assert pick_agent_endpoint([], "node-a", 1, service) == (
        "no agent pod on node node-a (service faultmesh/faultmesh-agent has no endpoint there)"
    )
    not_ready = [endpoint_slice(endpoint("node-a", "10.1.0.5", "agent-a", ready=False))]
    assert pick_agent_endpoint(not_ready, "node-a", 1, service) == "the agent pod faultmesh/agent-a is not Ready"
    leaving = [endpoint_slice(endpoint("node-a", "10.1.0.5", "agent-a", ready=False, terminating=True))]
    assert pick_agent_endpoint(leaving, "node-a", 1, service) == "the agent pod faultmesh/agent-a is terminating"


def test_pool_settings_are_checked() -> None:
    kube = cast(Kube, object())
    with pytest.raises(ValueError, match="exactly one of label_selector or service"):
        AgentPool(kube, namespace="faultmesh", tls=None)
    with pytest.raises(ValueError, match="exactly one of label_selector or service"):
        AgentPool(kube, namespace="faultmesh", tls=None, label_selector=SELECTOR, service="faultmesh-agent")
    with pytest.raises(ValueError, match="agent port 0 is not a TCP port"):
        AgentPool(kube, namespace="faultmesh", tls=None, label_selector=SELECTOR, port=0)
    pool = AgentPool(kube, namespace="faultmesh", tls=None, label_selector=SELECTOR)
    with pytest.raises(ValueError, match=r"interval 30 s must be more than 0 and shorter than the lease \(30 s\)"):
        asyncio.run(pool.keep_leases(OWNER, ttl=30, interval=30))


# ---- the pool with real agents on loopback ------------------------------------------------------------------


def marker_planner(spec: Mapping[str, Any], target: Target) -> Plan:
    """A fault that is a file: touch it, remove it to undo, list the directory to probe."""
    path = f"{target.facts['dir']}/{spec['name']}"
    step = Step(f"marker {spec['name']}", apply=Exec(("touch", path)), undo=Exec(("rm", "-f", path)),
                probe=Probe(("ls", str(target.facts["dir"])), str(spec["name"])))
    return Plan(KIND, target, (step,))


class AgentPods:
    """The API server's answer to "list the agent pods": what the test says runs where."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.lists = 0

    async def list_all(self, resource: Any, namespace: str | None = None, *, label_selector: str | None = None,
                       field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        assert (namespace, label_selector) == ("faultmesh", SELECTOR)
        node = (field_selector or "").removeprefix("spec.nodeName=")
        self.lists += 1
        return [p for p in self.pods if p["spec"]["nodeName"] == node], "1"

    def serve(self, node: str, agent: RunningAgent, name: str = "agent") -> None:
        self.pods = [agent_pod(name, node, "127.0.0.1")]


@contextlib.asynccontextmanager
async def agent_on_loopback(tmp_path: Path, certs: Bundle, name: str) -> AsyncIterator[RunningAgent]:
    planners = PlannerRegistry()
    planners.register(KIND, marker_planner)
    config = AgentConfig(tls=certs.server, listen="127.0.0.1:0", journal=tmp_path / f"{name}.jsonl", metrics="",
                         grace=0.2)
    async with running_agent(config, planners) as agent:
        yield agent


@pytest.fixture
def certs(tmp_path: Path) -> Bundle:
    return write_bundle(tmp_path / "certs", hosts=(SERVER_NAME,))


def pool_for(pods: AgentPods, certs: Bundle, port: int, timeout: float = 5.0) -> AgentPool:
    return AgentPool(cast(Kube, pods), namespace="faultmesh", label_selector=SELECTOR, port=port, tls=certs.client,
                     server_name=SERVER_NAME, timeout=timeout)


def test_pool_finds_connects_caches_and_keeps_leases(tmp_path: Path, certs: Bundle) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    target = TargetRef(f"process://{os.getpid()}", "shop/web-0", {"dir": str(markers)})

    async def main() -> None:
        pods = AgentPods()
        async with agent_on_loopback(tmp_path, certs, "a") as agent, pool_for(pods, certs, agent.port) as pool:
            with pytest.raises(AgentUnavailableError) as caught:
                await pool.client_for("node-a")
            assert str(caught.value) == (f"agent of node node-a unavailable: no agent pod on node node-a "
                                         f"(no pod labelled {SELECTOR} in namespace faultmesh runs there)")
            assert pool.alive_injections("node-a") is None

            pods.serve("node-a", agent)
            client = await pool.client_for("node-a")
            assert (await client.health()).serving
            assert await pool.client_for("node-a") is client
            assert pods.lists == 2  # the failed look-up and the one that found it; then the cached client

            await pool.apply("node-a", "shop/long/uid/web-0", OWNER, KIND, {"name": "long"}, target, 30)
            assert pool.alive_injections("node-a") is None  # no renewal round yet: the agent has not said
            reports = await pool.renew_leases(OWNER, ttl=30)
            assert reports["node-a"].alive == frozenset({"shop/long/uid/web-0"})
            assert pool.alive_injections("node-a") == {"shop/long/uid/web-0"}

            # Applied after the round: alive, since that round's answer could not name it yet.
            await pool.apply("node-a", "shop/late/uid/web-0", OWNER, KIND, {"name": "late"}, target, 30)
            assert pool.alive_injections("node-a") == {"shop/long/uid/web-0", "shop/late/uid/web-0"}

            # The agent lets one go without the pool's knowledge; the next round shows it.
            await client.recover("shop/long/uid/web-0", "gone behind the pool's back")
            await pool.renew_leases(OWNER, ttl=30)
            assert pool.alive_injections("node-a") == {"shop/late/uid/web-0"}
            assert sorted(p.name for p in markers.iterdir()) == ["late"]

    asyncio.run(main())


def test_an_expired_lease_shows_as_not_alive_after_the_next_round(tmp_path: Path, certs: Bundle) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    target = TargetRef(f"process://{os.getpid()}", "shop/web-0", {"dir": str(markers)})

    async def main() -> None:
        pods = AgentPods()
        async with agent_on_loopback(tmp_path, certs, "a") as agent, pool_for(pods, certs, agent.port) as pool:
            pods.serve("node-a", agent)
            await pool.apply("node-a", "shop/brief/uid/web-0", OWNER, KIND, {"name": "brief"}, target, 0.5)
            client = await pool.client_for("node-a")
            deadline = time.monotonic() + 10
            while (await client.list())[0].phase != "Recovered":  # the agent recovers it when the lease runs out
                assert time.monotonic() < deadline, "the lease did not run out"
                await asyncio.sleep(0.1)
            assert pool.alive_injections("node-a") is None  # no round yet
            await pool.renew_leases(OWNER, ttl=30)
            assert pool.alive_injections("node-a") == set()
            assert not (markers / "brief").exists()

    asyncio.run(main())


def test_a_replaced_agent_is_found_again_and_a_dead_one_is_unavailable(tmp_path: Path, certs: Bundle) -> None:
    async def main() -> None:
        pods = AgentPods()
        async with agent_on_loopback(tmp_path, certs, "first") as first:
            pool = pool_for(pods, certs, first.port)
            pods.serve("node-a", first, "agent-1")
            assert (await pool.run("node-a", lambda c: c.health())).serving
        try:
            # The first agent is gone; a second one, on another port, stands for its replacement pod.
            async with agent_on_loopback(tmp_path, certs, "second") as second:
                pool.port = second.port
                pods.serve("node-a", second, "agent-2")
                # The cached client fails, the pool looks the agent up again and calls the new one.
                assert (await pool.run("node-a", lambda c: c.health())).serving
                second_address = f"127.0.0.1:{second.port}"
            unreachable = (f"agent of node node-a unavailable: connection to the agent pod faultmesh/agent-2 at "
                           f"{second_address} failed: UNAVAILABLE: ")
            with pytest.raises(AgentUnavailableError) as caught:
                await pool.run("node-a", lambda c: c.health())
            assert str(caught.value).startswith(unreachable)
            with pytest.raises(AgentUnavailableError) as caught:
                await pool.client_for("node-a")
            assert str(caught.value).startswith(unreachable)
            reports = await pool.renew_leases(OWNER, ttl=30)
            assert reports["node-a"].alive is None
            assert reports["node-a"].error.startswith(unreachable)
            assert pool.alive_injections("node-a") is None
        finally:
            await pool.close()

    asyncio.run(main())


def test_a_certificate_from_another_ca_is_refused_with_a_clear_reason(tmp_path: Path, certs: Bundle) -> None:
    stranger = write_bundle(tmp_path / "stranger", hosts=(SERVER_NAME,))

    async def main() -> None:
        pods = AgentPods()
        async with agent_on_loopback(tmp_path, certs, "a") as agent, pool_for(pods, stranger, agent.port) as pool:
            pods.serve("node-a", agent)
            with pytest.raises(AgentUnavailableError) as caught:
                await pool.client_for("node-a")
            assert "connection to the agent pod faultmesh/agent at 127.0.0.1:" in str(caught.value)
            assert "UNAVAILABLE" in str(caught.value)

    asyncio.run(main())


def test_refusals_by_the_agent_stay_agent_errors(tmp_path: Path, certs: Bundle) -> None:
    async def main() -> None:
        pods = AgentPods()
        async with agent_on_loopback(tmp_path, certs, "a") as agent, pool_for(pods, certs, agent.port) as pool:
            pods.serve("node-a", agent)
            with pytest.raises(AgentError) as caught:
                await pool.recover("node-a", "never/applied/uid/x")
            assert caught.value.code == grpc.StatusCode.NOT_FOUND
            assert (await pool.client_for("node-a")) is (await pool.client_for("node-a"))  # still connected

    asyncio.run(main())
