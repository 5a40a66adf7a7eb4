"""PodChaos actions done through the API (pod-kill, pod-failure) at scale: overlapping within a pass, bounded,
in record order, each failure kept to its own record; and never mistaken for agent work.

bench/cluster.py measures the same passes on a real API server with 1,000 kwok pods.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from typing import Any

from faultmesh.controller.reconciler import API_SIDE_CONCURRENCY, Reconciler
from faultmesh.kinds.experiment import AgentWork
from faultmesh.selection import Container, Inventory, Namespace, Pod

NOW = 1_800_000_000.0


def pods(count: int) -> dict[str, Pod]:
    made = [Pod(namespace="shop", name=f"web-{i:02d}", labels={"app": "web"}, node_name=f"node-{i % 3}",
                phase="Running", pod_ips=(f"10.0.0.{i + 1}",), containers=(Container(name="main"),))
            for i in range(count)]
    return {pod.key: pod for pod in made}


class Pods:
    def __init__(self, by_key: dict[str, Pod]) -> None:
        self.by_key = by_key

    def inventory(self) -> Inventory:
        return Inventory(pods=tuple(self.by_key.values()), namespaces=(Namespace(name="shop"),))

    def pods(self) -> Mapping[str, Pod]:
        return dict(self.by_key)


class Api:
    """Records the pod actions; each one yields to the loop, so actions of one pass can overlap."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.actions: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.version = 1

    async def _act(self, action: str, name: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if name in self.refuse:
                raise RuntimeError(f"pods {name} is forbidden")
            self.actions.append((action, name))
        finally:
            self.in_flight -= 1

    async def update_experiment(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.version)
        return stored

    async def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    async def kill_pod(self, namespace: str, name: str, grace_period: int | None) -> None:
        await self._act("kill", name)

    async def fail_pod(self, namespace: str, name: str, chaos_name: str, containers: Sequence[str]) -> None:
        await self._act("fail", name)

    async def restore_pod(self, namespace: str, name: str, chaos_name: str) -> None:
        await self._act("restore", name)


class NoAgents:
    """pod-kill and pod-failure must never reach an agent, not even to ask what it holds."""

    async def apply(self, node: str, work: AgentWork, owner: str, lease_ttl: float) -> str | None:
        raise AssertionError(f"agent apply on {node} for an API-side action")

    async def recover(self, node: str, injection: str, reason: str) -> str | None:
        raise AssertionError(f"agent recover on {node} for an API-side action")

    def alive(self, node: str) -> set[str] | None:
        raise AssertionError(f"asked the agent of {node} about an API-side action")


def podchaos(action: str) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "chaos", "namespace": "shop", "uid": "u-1", "resourceVersion": "1",
                     "creationTimestamp": "2027-01-15T08:00:00Z", "finalizers": ["chaos-mesh/records"]},
        "spec": {"action": action, "mode": "all", "gracePeriod": 0,
                 "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "web"}}},
    }


def reconcile(api: Api, by_key: dict[str, Pod], obj: dict[str, Any]) -> Any:
    reconciler = Reconciler(api, NoAgents(), Pods(by_key), owner="controller:test", clock=lambda: NOW)
    return asyncio.run(reconciler.reconcile("PodChaos", obj))


def phases(obj: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["phase"] for r in obj["status"]["experiment"]["containerRecords"]}


def test_pod_kill_over_many_pods_overlaps_up_to_the_bound_and_reports_in_record_order() -> None:
    api, by_key = Api(), pods(3 * API_SIDE_CONCURRENCY)
    obj = podchaos("pod-kill")
    outcome = reconcile(api, by_key, obj)
    assert not outcome.retry
    assert api.most_in_flight == API_SIDE_CONCURRENCY
    assert sorted(name for _, name in api.actions) == sorted(pod.name for pod in by_key.values())
    assert set(phases(obj).values()) == {"Injected"}
    applied = [message for _, reason, message in api.events if reason == "Applied"]
    assert applied == [f"Successfully apply chaos for {key}" for key in sorted(by_key)]
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["AllInjected"] == "True"


def test_a_refused_pod_fails_alone_and_the_pass_asks_for_a_retry() -> None:
    api, by_key = Api(refuse=frozenset({"web-03"})), pods(20)
    obj = podchaos("pod-kill")
    outcome = reconcile(api, by_key, obj)
    assert outcome.retry
    assert phases(obj)["shop/web-03"] == "Not Injected"
    assert [key for key, phase in phases(obj).items() if phase != "Injected"] == ["shop/web-03"]
    failures = [message for kind, reason, message in api.events if kind == "Warning" and reason == "Failed"]
    assert failures == ["Failed to apply chaos: kill pod shop/web-03: pods web-03 is forbidden"]


def test_pod_failure_runs_and_recovers_without_asking_any_agent() -> None:
    api, by_key = Api(), pods(2 * API_SIDE_CONCURRENCY + 1)
    obj = podchaos("pod-failure")
    reconcile(api, by_key, obj)
    assert set(phases(obj).values()) == {"Injected"}
    # A later pass while it runs (say, a pod changed) leaves the swapped pods alone and asks no agent.
    reconcile(api, by_key, obj)
    assert sorted(api.actions) == sorted(("fail", pod.name) for pod in by_key.values())
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:05:00Z"
    reconcile(api, by_key, obj)
    restored = sorted(name for action, name in api.actions if action == "restore")
    assert restored == sorted(pod.name for pod in by_key.values())
    assert api.most_in_flight == API_SIDE_CONCURRENCY
    assert "chaos-mesh/records" not in obj["metadata"]["finalizers"]
