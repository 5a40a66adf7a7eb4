"""The reconciler's passes over one experiment, against recording stand-ins for the API and the agents.

These check the sequencing of Chaos Mesh's lifecycle (finalizer, selection, records, recovery, release); the
cluster tier runs the same code against a real API server and real agents.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from typing import Any

from faultmesh.controller.reconciler import FINALIZER, Reconciler
from faultmesh.kinds.experiment import AgentWork
from faultmesh.selection import Container, ContainerStatus, Inventory, Namespace, Pod

NOW = 1_800_000_000.0


def pod(name: str, ip: str, node: str = "node-1", labels: Mapping[str, str] | None = None) -> Pod:
    return Pod(
        namespace="shop", name=name, labels=dict(labels or {"app": name}), node_name=node, phase="Running",
        pod_ips=(ip,), containers=(Container(name="main"),),
        container_statuses=(ContainerStatus(name="main", container_id=f"containerd://{name}", ready=True),),
    )


class Pods:
    def __init__(self, *pods: Pod) -> None:
        self.by_key = {p.key: p for p in pods}

    def inventory(self) -> Inventory:
        return Inventory(pods=tuple(self.by_key.values()), namespaces=(Namespace(name="shop"),))

    def pods(self) -> Mapping[str, Pod]:
        return dict(self.by_key)


class Api:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.killed: list[tuple[str, str, int | None]] = []
        self.version = 1

    async def update_experiment(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.updates.append(stored)
        return stored

    async def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    async def kill_pod(self, namespace: str, name: str, grace_period: int | None) -> None:
        self.killed.append((namespace, name, grace_period))

    async def fail_pod(self, namespace: str, name: str, chaos_name: str, containers: Sequence[str]) -> None:
        raise AssertionError("not used here")

    async def restore_pod(self, namespace: str, name: str, chaos_name: str) -> None:
        raise AssertionError("not used here")

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


class Agents:
    def __init__(self) -> None:
        self.applied: dict[str, AgentWork] = {}
        self.recovered: list[str] = []
        self.unreachable = False
        self.lost: set[str] = set()

    async def apply(self, node: str, work: AgentWork, owner: str, lease_ttl: float) -> str | None:
        if self.unreachable:
            return f"agent on {node}: connection refused"
        self.applied[work.injection_id] = work
        return None

    async def recover(self, node: str, injection: str, reason: str) -> str | None:
        if self.unreachable:
            return f"agent on {node}: connection refused"
        self.applied.pop(injection, None)
        self.recovered.append(injection)
        return None

    def alive(self, node: str) -> set[str] | None:
        return {i for i in self.applied if i not in self.lost}


def partition(**extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"name": "cut", "namespace": "shop", "uid": "u-1", "resourceVersion": "1",
                     "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"action": "partition", "mode": "all", "selector": {"namespaces": ["shop"],
                 "labelSelectors": {"app": "web"}}, "direction": "both",
                 "target": {"mode": "all", "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "db"}}}},
    }
    obj["spec"].update(extra)
    return obj


def run(reconciler: Reconciler, obj: dict[str, Any]) -> Any:
    return asyncio.run(reconciler.reconcile(obj["kind"], obj))


def make(api: Api, agents: Agents, pods: Pods, now: float = NOW) -> Reconciler:
    return Reconciler(api, agents, pods, owner="controller:test", clock=lambda: now)


def created_now() -> float:
    import datetime as dt

    return dt.datetime(2027, 1, 15, 8, 0, 0, tzinfo=dt.UTC).timestamp()


def web_and_db() -> Pods:
    return Pods(pod("web", "10.0.0.1"), pod("db", "10.0.0.2"))


def after_two_passes(obj: dict[str, Any], pods: Pods) -> tuple[Api, Agents, Reconciler]:
    """A reconciler 5 s after the experiment's creation, through its first two passes over ``obj``: the first
    adds the finalizer, the second selects the targets and injects."""
    api, agents = Api(), Agents()
    reconciler = make(api, agents, pods, created_now() + 5)
    run(reconciler, obj)
    run(reconciler, obj)
    return api, agents, reconciler


def test_first_pass_adds_the_finalizer_and_nothing_else() -> None:
    api, agents = Api(), Agents()
    obj = partition()
    run(make(api, agents, web_and_db()), obj)
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    assert api.reasons() == ["FinalizerInited"]
    assert agents.applied == {}


def test_selects_applies_both_sides_and_writes_chaos_mesh_status() -> None:
    api, agents = Api(), Agents()
    obj = partition()
    reconciler = make(api, agents, web_and_db(), created_now() + 5)
    run(reconciler, obj)
    outcome = run(reconciler, obj)
    assert not outcome.retry
    records = obj["status"]["experiment"]["containerRecords"]
    assert [(r["id"], r["selectorKey"], r["phase"], r["injectedCount"]) for r in records] == [
        ("shop/web", ".", "Injected", 1), ("shop/db", ".Target", "Injected", 1)]
    assert obj["status"]["experiment"]["desiredPhase"] == "Run"
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions == {"Selected": "True", "AllInjected": "True", "AllRecovered": "False", "Paused": "False"}
    assert api.reasons()[1:] == ["Started", "Applied", "Applied"]
    peers = {w.target.record_id: w.spec["peers"] for w in agents.applied.values()}
    assert peers == {"shop/web": [{"network": "10.0.0.2", "port": 0}], "shop/db": [{"network": "10.0.0.1", "port": 0}]}


def test_duration_elapsed_recovers_and_reports_time_up() -> None:
    api, agents = Api(), Agents()
    obj = partition(duration="30s")
    pods = web_and_db()
    run(make(api, agents, pods, created_now() + 1), obj)
    outcome = run(make(api, agents, pods, created_now() + 1), obj)
    assert outcome.recheck_in == 29
    run(make(api, agents, pods, created_now() + 31), obj)
    assert agents.applied == {}
    assert obj["status"]["experiment"]["desiredPhase"] == "Stop"
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["AllRecovered"] == "True"
    assert "TimeUp" in api.reasons() and api.reasons().count("Recovered") == 2


def test_deletion_recovers_then_releases_the_finalizer() -> None:
    obj = partition()
    api, agents, reconciler = after_two_passes(obj, web_and_db())
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:10Z"
    run(reconciler, obj)
    assert agents.applied == {}
    assert obj["metadata"]["finalizers"] == []
    assert "Deleted" in api.reasons()


def test_an_unreachable_agent_keeps_the_finalizer_and_retries() -> None:
    obj = partition()
    api, agents, reconciler = after_two_passes(obj, web_and_db())
    agents.unreachable = True
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:10Z"
    outcome = run(reconciler, obj)
    assert outcome.retry
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    failures = [message for type_, reason, message in api.events if reason == "Failed"]
    assert failures and "connection refused" in failures[-1]
    agents.unreachable = False
    run(reconciler, obj)
    assert obj["metadata"]["finalizers"] == []


def test_a_vanished_pod_counts_as_recovered() -> None:
    obj, pods = partition(), web_and_db()
    _, agents, reconciler = after_two_passes(obj, pods)
    del pods.by_key["shop/db"]
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:10Z"
    run(reconciler, obj)
    assert obj["metadata"]["finalizers"] == []
    assert agents.recovered == ["u-1/./shop/web"]


def test_a_fault_the_agent_lost_is_injected_again() -> None:
    obj = partition()
    _, agents, reconciler = after_two_passes(obj, web_and_db())
    agents.lost = {"u-1/./shop/web"}
    del agents.applied["u-1/./shop/web"]
    agents.lost = set()
    run(reconciler, obj)
    records = {r["id"]: r for r in obj["status"]["experiment"]["containerRecords"]}
    assert records["shop/web"]["phase"] == "Injected" and records["shop/web"]["injectedCount"] == 2
    assert "u-1/./shop/web" in agents.applied


def test_pause_recovers_and_resume_injects_again() -> None:
    obj = partition()
    api, agents, reconciler = after_two_passes(obj, web_and_db())
    obj["metadata"]["annotations"] = {"experiment.chaos-mesh.org/pause": "true"}
    run(reconciler, obj)
    assert agents.applied == {}
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Paused"] == "True"
    obj["metadata"]["annotations"] = {}
    run(reconciler, obj)
    assert len(agents.applied) == 2
    assert api.reasons().count("Started") == 2 and "Paused" in api.reasons()


def test_pod_kill_deletes_once_and_is_never_repeated() -> None:
    obj = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "kill", "namespace": "shop", "uid": "u-2", "creationTimestamp": "2027-01-15T08:00:00Z",
                     "annotations": {}},
        "spec": {"action": "pod-kill", "mode": "one", "gracePeriod": 5,
                 "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "web"}}},
    }
    api, _, reconciler = after_two_passes(obj, Pods(pod("web", "10.0.0.1")))
    obj["metadata"]["annotations"] = {"experiment.chaos-mesh.org/pause": "true"}
    run(reconciler, obj)
    run(reconciler, obj)
    assert api.killed == [("shop", "web", 5)]
    assert obj["status"]["experiment"]["desiredPhase"] == "Run"


def test_nothing_selected_is_a_failed_event_and_a_retry() -> None:
    api, agents = Api(), Agents()
    obj = partition()
    reconciler = make(api, agents, Pods(pod("other", "10.0.0.9")), created_now() + 5)
    run(reconciler, obj)
    outcome = run(reconciler, obj)
    assert outcome.retry
    assert any(reason == "Failed" and "no target has been selected" in message for _, reason, message in api.events)
    assert "containerRecords" not in obj["status"]["experiment"]


def test_force_clean_annotation_releases_without_recovery() -> None:
    obj = partition()
    _, agents, reconciler = after_two_passes(obj, web_and_db())
    agents.unreachable = True
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:10Z"
    obj["metadata"]["annotations"] = {"chaos-mesh.chaos-mesh.org/cleanFinalizer": "forced"}
    run(reconciler, obj)
    assert obj["metadata"]["finalizers"] == []


def test_pod_kill_without_a_grace_period_deletes_at_once_as_chaos_mesh_does() -> None:
    obj = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "kill", "namespace": "shop", "uid": "u-3", "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": ["shop"],
                                                                    "labelSelectors": {"app": "web"}}},
    }
    api, _, _ = after_two_passes(obj, Pods(pod("web", "10.0.0.1")))
    assert api.killed == [("shop", "web", 0)]
