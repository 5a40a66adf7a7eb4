"""What the cluster e2e tier found about retries and restarts, pinned down without a cluster.

- A failed pass writes a Failed record event; reacting to that write retried at once, in a loop as fast as the API
  server answered, so the work queue's backoff never applied (`worth_reconciling`).
- A restarted controller renewed no lease and never learnt which faults the agents had lost, until something else
  made it call each agent: faults recorded as injected are watched from the first pass (`AgentActions.alive`).
- A stopping experiment whose fault the agent already dropped is recovered, not "injected again".
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faultmesh.agent.rpc.client import TargetRef
from faultmesh.agent.rpc.tls import Bundle
from faultmesh.controller.main import AgentActions, worth_reconciling
from faultmesh.selection import Pod

from .test_agents import KIND, OWNER, AgentPods, agent_on_loopback, certs, pool_for
from .test_reconciler import Agents, Api, Pods, created_now, make, partition, pod, run

__all__ = ["certs"]  # the fixture, used by name


def reconciled_partition() -> dict[str, Any]:
    obj = partition()
    obj["metadata"]["finalizers"] = ["chaos-mesh/records"]
    obj["status"] = {
        "conditions": [{"type": "Selected", "status": "True"}],
        "experiment": {"desiredPhase": "Run", "containerRecords": [
            {"id": "shop/web", "selectorKey": ".", "phase": "Injected", "injectedCount": 1, "recoveredCount": 0,
             "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2027-01-15T08:00:05Z"}]},
        ]},
    }
    return obj


def test_an_update_that_only_adds_record_events_is_not_reconciled_again() -> None:
    old = reconciled_partition()
    new = copy.deepcopy(old)
    new["metadata"].update(resourceVersion="9", generation=7, managedFields=[{"manager": "faultmesh"}])
    new["status"]["experiment"]["containerRecords"][0]["events"].append(
        {"type": "Failed", "operation": "Recover", "timestamp": "2027-01-15T08:01:00Z", "message": "unreachable"})
    assert not worth_reconciling(old, new)


def test_updates_a_pass_must_see_are_reconciled() -> None:
    old = reconciled_partition()
    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "paused": lambda o: o["metadata"].setdefault("annotations", {}).update(
            {"experiment.chaos-mesh.org/pause": "true"}),
        "deleted": lambda o: o["metadata"].update(deletionTimestamp="2027-01-15T08:02:00Z"),
        "finalizer gone": lambda o: o["metadata"].update(finalizers=[]),
        "record phase": lambda o: o["status"]["experiment"]["containerRecords"][0].update(phase="Not Injected"),
        "desired phase": lambda o: o["status"]["experiment"].update(desiredPhase="Stop"),
        "spec": lambda o: o["spec"].update(direction="to"),
    }
    for what, change in changes.items():
        new = copy.deepcopy(old)
        change(new)
        assert worth_reconciling(old, new), what


def test_a_restarted_controller_renews_and_checks_faults_an_earlier_one_applied(tmp_path: Path,
                                                                                certs: Bundle) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    target = TargetRef(f"process://{os.getpid()}", "shop/web-0", {"dir": str(markers)})

    async def main() -> None:
        pods = AgentPods()
        async with agent_on_loopback(tmp_path, certs, "a") as agent:
            pods.serve("node-a", agent)
            async with pool_for(pods, certs, agent.port) as before:
                await before.apply("node-a", "shop/kept/uid/web-0", OWNER, KIND, {"name": "kept"}, target, 30)
                await before.apply("node-a", "shop/lost/uid/web-0", OWNER, KIND, {"name": "lost"}, target, 30)
                client = await before.client_for("node-a")
                await client.recover("shop/lost/uid/web-0", "its lease ran out while no controller ran")
                expiry = {i.injection_id: i.lease_expires_at for i in await client.list(OWNER)}
            async with pool_for(pods, certs, agent.port) as after:  # the controller restarted: a new pool
                actions = AgentActions(after)
                assert actions.alive("node-a") is None  # not asked yet
                await asyncio.sleep(0.05)
                await after.renew_leases(OWNER, ttl=30)
                assert actions.alive("node-a") == {"shop/kept/uid/web-0"}
                listed = await (await after.client_for("node-a")).list(OWNER)
                renewed = {i.injection_id: i.lease_expires_at for i in listed}
                assert renewed["shop/kept/uid/web-0"] > expiry["shop/kept/uid/web-0"]

    asyncio.run(main())


def test_a_deleted_experiment_whose_fault_the_agent_dropped_is_recovered_not_injected_again() -> None:
    api, agents = Api(), Agents()
    obj = partition()
    reconciler = make(api, agents, Pods(pod("web", "10.0.0.1"), pod("db", "10.0.0.2")), created_now() + 5)
    run(reconciler, obj)
    run(reconciler, obj)
    agents.lost = {"u-1/./shop/web"}  # the agent recovered it on its own while the agent was away
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:10Z"
    run(reconciler, obj)
    assert obj["metadata"]["finalizers"] == []
    assert not [message for _, reason, message in api.events if "injecting it again" in message]
    assert api.reasons().count("Recovered") == 2
    records = {r["id"]: r for r in api.updates[-1]["status"]["experiment"]["containerRecords"]}
    assert records["shop/web"]["recoveredCount"] == 1 and records["shop/web"]["phase"] == "Not Injected"


class PodApi(Api):
    def __init__(self) -> None:
        super().__init__()
        self.failed: list[str] = []

    async def fail_pod(self, namespace: str, name: str, chaos_name: str, containers: Sequence[str]) -> None:
        self.failed.append(name)


def test_pod_failure_is_not_taken_for_a_fault_its_agent_lost() -> None:
    """pod-failure lives in the pod's spec: an agent that holds nothing for the node is no reason to act again."""
    api, agents = PodApi(), Agents()
    obj: dict[str, Any] = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "fail", "namespace": "shop", "uid": "u-2", "resourceVersion": "1",
                     "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"action": "pod-failure", "mode": "all",
                 "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "web"}}},
    }
    reconciler = make(api, agents, Pods(pod("web", "10.0.0.1")), created_now() + 5)
    for _ in range(4):  # the finalizer, the injection, then passes with nothing to do
        run(reconciler, obj)
    assert agents.alive("node-1") == set()
    assert api.failed == ["web"]
    assert [reason for _, reason, _ in api.events] == ["FinalizerInited", "Started", "Applied"]


def test_lost_faults_names_the_experiments_whose_agent_dropped_a_recorded_injection() -> None:
    from faultmesh.controller.main import Controller

    class Pool:
        def alive_injections(self, node: str) -> set[str] | None:
            return {"u-1/./shop/web"} if node == "node-1" else None

    class Informer:
        def __init__(self, objects: dict[tuple[str, str], dict[str, object]]) -> None:
            self.cache = objects

    def chaos(uid: str, records: list[dict[str, str]]) -> dict[str, object]:
        return {"metadata": {"uid": uid}, "status": {"experiment": {"containerRecords": records}}}

    class Pods:
        def pods(self) -> dict[str, Pod]:
            return {"shop/web": Pod(namespace="shop", name="web", node_name="node-1"),
                    "shop/db": Pod(namespace="shop", name="db", node_name="node-1"),
                    "shop/far": Pod(namespace="shop", name="far", node_name="node-2")}

    controller = Controller.__new__(Controller)
    controller.pool = Pool()  # type: ignore[assignment]
    controller.pods = Pods()  # type: ignore[assignment]
    controller.informers = {  # type: ignore[assignment]
        "NetworkChaos": Informer({
            ("shop", "kept"): chaos("u-1", [{"id": "shop/web", "selectorKey": ".", "phase": "Injected"}]),
            ("shop", "lost"): chaos("u-2", [{"id": "shop/db", "selectorKey": ".", "phase": "Injected"}]),
            ("shop", "unknown"): chaos("u-3", [{"id": "shop/far", "selectorKey": ".", "phase": "Injected"}]),
            ("shop", "stopped"): chaos("u-4", [{"id": "shop/db", "selectorKey": ".", "phase": "Not Injected"}]),
        }),
        "PodChaos": Informer({("shop", "kill"): chaos("u-5", [{"id": "shop/db", "selectorKey": ".",
                                                                "phase": "Injected"}])}),
    }
    assert controller.lost_faults() == [("NetworkChaos", "shop", "lost")]
