"""The controller's plumbing on the real test-bed API server: the generic calls, informers (custom
objects and kwok pods, watch timeouts, 410 Gone, bookmarks, a resource that appears late), client
rate limiting, Events with client-go's correlation, leader election on a Lease, and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from faultmesh.controller.election import LeaderElector, LeaseRecord
from faultmesh.controller.informer import Change, Informer
from faultmesh.controller.kube import (
    EVENTS,
    LEASES,
    NODES,
    PODS,
    EventCorrelator,
    Kube,
    KubeError,
    ResourceType,
    chaos_resource,
)
from faultmesh.controller.metrics import ControllerMetrics, Sources, chaos_status, serve_metrics
from faultmesh.selection import Pod, parse_pod

from .conftest import Cluster

FAULTMESH = Path(sys.executable).with_name("faultmesh")
PODCHAOS = chaos_resource("PodChaos", "podchaos")
WORKFLOWS = chaos_resource("Workflow", "workflows")
TEST_TIMEOUT_S = 90


# ---- helpers ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    """The CRDs `faultmesh crds` prints, applied and Established."""
    output = subprocess.run([str(FAULTMESH), "crds"], capture_output=True, text=True, check=True).stdout
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=output)
    for name in ("podchaos.chaos-mesh.org", "workflows.chaos-mesh.org"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def run(cluster: Cluster, scenario: Callable[[Kube], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with await Kube.connect(cluster.kubeconfig) as kube:
            await asyncio.wait_for(scenario(kube), TEST_TIMEOUT_S)

    asyncio.run(main())


async def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll ``predicate`` on the event loop; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return loop.time() - start


def podchaos(namespace: str, name: str, *, action: str = "pod-failure", duration: str | None = "1h",
             **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"action": action, "mode": "all", "selector": {"namespaces": [namespace]}}
    if duration:
        spec["duration"] = duration
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        **extra,
    }


class Recorder:
    """An ``on_change`` handler that keeps what it was told."""

    def __init__(self) -> None:
        self.changes: list[Change[Any]] = []

    async def __call__(self, change: Change[Any]) -> None:
        await asyncio.sleep(0)  # a coroutine handler is awaited, like a plain one is called
        self.changes.append(change)

    def seen(self, kind: str, name: str) -> bool:
        return any(c.type == kind and c.key[1] == name for c in self.changes)

    def of(self, name: str) -> list[str]:
        return [c.type for c in self.changes if c.key[1] == name]


# ---- generic calls ---------------------------------------------------------------------------------------


def test_generic_calls_guard_writes_with_resource_versions(cluster: Cluster, crds: None, namespace: str) -> None:
    async def scenario(kube: Kube) -> None:
        created = await kube.create(PODCHAOS, podchaos(namespace, "guarded"))
        assert created["metadata"]["uid"] and created["kind"] == "PodChaos"
        stale = await kube.get(PODCHAOS, "guarded", namespace)

        patched = await kube.merge_patch(PODCHAOS, "guarded", {"metadata": {"labels": {"step": "one"}}}, namespace)
        assert patched["metadata"]["labels"] == {"step": "one"}
        assert patched["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]

        stale["spec"]["duration"] = "2h"
        with pytest.raises(KubeError) as conflict:
            await kube.replace(PODCHAOS, stale)
        assert conflict.value.status == 409
        assert "modified" in str(conflict.value) and "podchaos.chaos-mesh.org" in str(conflict.value)

        fresh = await kube.get(PODCHAOS, "guarded", namespace)
        fresh["spec"]["duration"] = "2h"
        replaced = await kube.replace(PODCHAOS, fresh)
        assert replaced["spec"]["duration"] == "2h"

        with pytest.raises(KubeError) as failed_test:
            await kube.json_patch(PODCHAOS, "guarded", [
                {"op": "test", "path": "/spec/duration", "value": "3h"},
                {"op": "replace", "path": "/spec/duration", "value": "4h"},
            ], namespace)
        assert failed_test.value.status == 422
        patched = await kube.json_patch(PODCHAOS, "guarded", [
            {"op": "test", "path": "/spec/duration", "value": "2h"},
            {"op": "replace", "path": "/spec/duration", "value": "4h"},
        ], namespace)
        assert patched["spec"]["duration"] == "4h"

        with pytest.raises(KubeError) as exists:
            await kube.create(PODCHAOS, podchaos(namespace, "guarded"))
        assert exists.value.status == 409

        await kube.delete(PODCHAOS, "guarded", namespace)
        with pytest.raises(KubeError) as missing:
            await kube.get(PODCHAOS, "guarded", namespace)
        assert missing.value.status == 404
        assert await kube.delete(PODCHAOS, "guarded", namespace, missing_ok=True) is None
        with pytest.raises(ValueError, match="namespaced"):
            await kube.get(PODCHAOS, "guarded")

    run(cluster, scenario)


def test_status_subresource_is_written_on_its_own(cluster: Cluster, crds: None, namespace: str) -> None:
    """Workflows have a status subresource (Chaos Mesh's experiment kinds do not)."""

    async def scenario(kube: Kube) -> None:
        body = {
            "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "with-status", "namespace": namespace},
            "spec": {"entry": "entry", "templates": [{"name": "entry", "templateType": "Suspend", "deadline": "1m"}]},
        }
        created = await kube.create(WORKFLOWS, body)
        created["status"] = {"entryNode": "entry-abc"}
        written = await kube.replace(WORKFLOWS, created, subresource="status")
        assert written["status"]["entryNode"] == "entry-abc"
        # The main resource ignores status, as the status subresource makes it.
        written["status"]["entryNode"] = "ignored"
        written["spec"]["entry"] = "entry"
        written["metadata"]["labels"] = {"touched": "yes"}
        updated = await kube.replace(WORKFLOWS, written)
        assert updated["status"]["entryNode"] == "entry-abc"
        assert updated["metadata"]["labels"] == {"touched": "yes"}
        patch = {"status": {"entryNode": "entry-def"}}
        merged = await kube.merge_patch(WORKFLOWS, "with-status", patch, namespace, subresource="status")
        assert merged["status"]["entryNode"] == "entry-def"

    run(cluster, scenario)


def test_list_all_pages_through_everything(cluster: Cluster, crds: None, namespace: str) -> None:
    async def scenario(kube: Kube) -> None:
        for index in range(7):
            await kube.create(PODCHAOS, podchaos(namespace, f"paged-{index}"))
        first = await kube.list_page(PODCHAOS, namespace, limit=3)
        assert len(first["items"]) == 3 and first["metadata"].get("continue")
        items, resource_version = await kube.list_all(PODCHAOS, namespace, page_size=3)
        assert sorted(item["metadata"]["name"] for item in items) == [f"paged-{i}" for i in range(7)]
        assert resource_version.isdigit()
        pods, _ = await kube.list_all(PODS, namespace)
        assert pods == []
        nodes, _ = await kube.list_all(NODES, page_size=1)
        assert all(node["kind"] == "Node" and node["apiVersion"] == "v1" for node in nodes)

    run(cluster, scenario)


def test_client_rate_limit_spaces_calls_without_stalling_a_crowd(cluster: Cluster) -> None:
    async def scenario(_: Kube) -> None:
        async def timed(qps: float, burst: int, calls: int) -> float:
            async with await Kube.connect(cluster.kubeconfig, qps=qps, burst=burst) as limited:
                loop = asyncio.get_running_loop()
                start = loop.time()
                await asyncio.gather(*(limited.get_lease("default", f"absent-{i}") for i in range(calls)))
                return loop.time() - start

        # 25 calls with 5 free: 20 wait their turn at 20/s, about a second.
        spaced = await timed(qps=20, burst=5, calls=25)
        assert 0.9 <= spaced < 5, spaced
        # A crowd of 400 at 200/s with 100 free: 1.5 s of spacing, and nothing stalls behind it.
        crowd = await timed(qps=200, burst=100, calls=400)
        assert 1.4 <= crowd < 10, crowd

    run(cluster, scenario)


# ---- informers -------------------------------------------------------------------------------------------


def test_informer_reports_create_update_delete_of_a_custom_object(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    async def scenario(kube: Kube) -> None:
        await kube.create(PODCHAOS, podchaos(namespace, "before"))
        recorder = Recorder()
        informer: Informer[dict[str, Any]] = Informer(kube, PODCHAOS, namespace, on_change=recorder)
        informer.start()
        try:
            await informer.wait_synced(20)
            assert set(informer.cache) == {(namespace, "before")}
            assert recorder.of("before") == ["added"]
            assert informer.lists == 1

            await kube.create(PODCHAOS, podchaos(namespace, "during"))
            await wait_until("added", lambda: recorder.seen("added", "during"))
            version = informer.version
            await kube.merge_patch(PODCHAOS, "during", {"spec": {"duration": "5m"}}, namespace)
            await wait_until("updated", lambda: recorder.seen("updated", "during"))
            update = next(c for c in recorder.changes if c.type == "updated")
            assert update.obj["spec"]["duration"] == "5m" and update.old["spec"]["duration"] == "1h"
            assert informer.get(namespace, "during")["spec"]["duration"] == "5m"
            assert informer.version > version

            await kube.delete(PODCHAOS, "during", namespace)
            await wait_until("deleted", lambda: recorder.seen("deleted", "during"))
            assert (namespace, "during") not in informer.cache
            assert recorder.of("during") == ["added", "updated", "deleted"]
            assert informer.resource_version and informer.resource_version.isdigit()
        finally:
            await informer.stop()
        assert not informer.running

    run(cluster, scenario)


def test_informer_survives_watch_timeouts(cluster: Cluster, crds: None, namespace: str) -> None:
    async def scenario(kube: Kube) -> None:
        recorder = Recorder()
        informer: Informer[dict[str, Any]] = Informer(kube, PODCHAOS, namespace, on_change=recorder, watch_timeout=1)
        informer.start()
        try:
            await informer.wait_synced(20)
            # Timeouts of 1–2 s: after 5 s the server has ended the watch at least twice.
            await wait_until("watches renewed", lambda: informer.watches >= 3, timeout=15)
            await kube.create(PODCHAOS, podchaos(namespace, "after-timeouts"))
            await wait_until("added", lambda: recorder.seen("added", "after-timeouts"))
            assert informer.lists == 1, "a timed-out watch resumes from its version; no relist"
        finally:
            await informer.stop()

    run(cluster, scenario)


def test_informer_relists_on_410_and_reports_what_changed_meanwhile(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    async def scenario(kube: Kube) -> None:
        for name in ("stays", "changes", "goes"):
            await kube.create(PODCHAOS, podchaos(namespace, name))
        recorder = Recorder()
        informer: Informer[dict[str, Any]] = Informer(kube, PODCHAOS, namespace, on_change=recorder)
        informer.start()
        await informer.wait_synced(20)
        await informer.stop()

        await kube.delete(PODCHAOS, "goes", namespace)
        await kube.merge_patch(PODCHAOS, "changes", {"spec": {"duration": "7m"}}, namespace)
        await kube.create(PODCHAOS, podchaos(namespace, "arrives"))
        # As if the informer had been away longer than the server keeps history: the real API server
        # answers this version with 410 Gone ("too old resource version").
        informer.resource_version = "1"
        recorder.changes.clear()
        informer.start()
        try:
            await wait_until("relist", lambda: informer.lists == 2)
            await wait_until("changes reported", lambda: len(recorder.changes) >= 3)
            assert sorted((c.type, c.key[1]) for c in recorder.changes) == [
                ("added", "arrives"), ("deleted", "goes"), ("updated", "changes"),
            ]
            deleted = next(c for c in recorder.changes if c.type == "deleted")
            assert deleted.obj["metadata"]["name"] == "goes", "a delete carries the last known object"
            assert {key[1] for key in informer.cache} == {"stays", "changes", "arrives"}
            assert int(informer.resource_version or 0) > 1
            # And it keeps watching from the new list.
            await kube.create(PODCHAOS, podchaos(namespace, "later"))
            await wait_until("added after relist", lambda: recorder.seen("added", "later"))
        finally:
            await informer.stop()

    run(cluster, scenario)


def test_bookmarks_move_the_resource_version_while_nothing_watched_changes(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        async def scenario(kube: Kube) -> None:
            informer: Informer[dict[str, Any]] = Informer(kube, PODCHAOS, namespace, watch_timeout=4)
            informer.start()
            try:
                await informer.wait_synced(20)
                listed = int(informer.resource_version or 0)
                # Changes elsewhere advance the server's PodChaos history; bookmarks bring this watch along.
                created = await kube.create(PODCHAOS, podchaos(other, "elsewhere"))
                elsewhere = int(created["metadata"]["resourceVersion"])
                assert elsewhere > listed
                await wait_until("a bookmark", lambda: int(informer.resource_version or 0) >= elsewhere, timeout=40)
                assert informer.cache == {} and informer.version == 0
            finally:
                await informer.stop()

        run(cluster, scenario)
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_informer_retries_until_its_resource_is_served(cluster: Cluster, namespace: str) -> None:
    """Started before its CRD exists (404 on every list), it backs off, then syncs once the CRD is served."""
    group = f"t{os.getpid()}.faultmesh.io"
    widgets = ResourceType(group, "v1", "widgets", "Widget")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }
    try:
        async def scenario(kube: Kube) -> None:
            recorder = Recorder()
            informer: Informer[dict[str, Any]] = Informer(kube, widgets, namespace, on_change=recorder)
            informer.start()
            try:
                await asyncio.sleep(2.5)
                assert not informer.synced.is_set() and informer.lists == 0
                await asyncio.to_thread(cluster.kubectl, "create", "-f", "-", stdin=yaml.safe_dump(crd))
                await asyncio.to_thread(cluster.kubectl, "wait", "--for=condition=Established",
                                        f"crd/widgets.{group}", "--timeout=60s")
                await informer.wait_synced(45)
                await kube.create(widgets, {"apiVersion": f"{group}/v1", "kind": "Widget",
                                            "metadata": {"name": "w", "namespace": namespace}})
                await wait_until("the widget", lambda: recorder.seen("added", "w"))
            finally:
                await informer.stop()

        run(cluster, scenario)
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--ignore-not-found", "--wait=false", check=False)


def kwok_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok",
                       "faultmesh.io/infra-test": name},
        },
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
    }


def kwok_pod(namespace: str, name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [{"name": "app", "image": "faultmesh.local/busybox:latest"}],
            "nodeSelector": {"faultmesh.io/infra-test": node},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


@pytest.fixture
def kwok_node_name(cluster: Cluster) -> Iterator[str]:
    name = f"infra-kwok-{os.getpid() % 100000}"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(kwok_node(name)))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


def test_pod_index_keeps_parsed_pods_of_a_label_selector(cluster: Cluster, namespace: str, kwok_node_name: str) -> None:
    async def scenario(kube: Kube) -> None:
        recorder = Recorder()
        informer: Informer[Pod] = Informer(kube, PODS, namespace, label_selector="app=web", on_change=recorder,
                                           transform=parse_pod)
        informer.start()
        try:
            await informer.wait_synced(20)
            await kube.create(PODS, kwok_pod(namespace, "web-1", kwok_node_name, {"app": "web"}))
            await kube.create(PODS, kwok_pod(namespace, "db-1", kwok_node_name, {"app": "db"}))
            await wait_until("web-1 added", lambda: recorder.seen("added", "web-1"))
            pod = informer.get(namespace, "web-1")
            assert isinstance(pod, Pod) and pod.key == f"{namespace}/web-1"
            # kwok binds it through the scheduler and runs it: the index follows every step.
            await wait_until(
                "web-1 running on the kwok node",
                lambda: (p := informer.get(namespace, "web-1")) is not None and p.phase == "Running"
                and p.node_name == kwok_node_name and bool(p.pod_ip),
                timeout=60,
            )
            assert "updated" in recorder.of("web-1")
            assert informer.get(namespace, "db-1") is None and not recorder.of("db-1"), "outside the selector"

            await kube.delete(PODS, "web-1", namespace, grace_period_seconds=0)
            await wait_until("web-1 deleted", lambda: recorder.seen("deleted", "web-1"))
            deleted = next(c for c in recorder.changes if c.type == "deleted")
            assert isinstance(deleted.obj, Pod) and deleted.obj.name == "web-1"
            assert informer.cache == {}
        finally:
            await informer.stop()

    run(cluster, scenario)


# ---- events ----------------------------------------------------------------------------------------------


def test_events_are_written_and_repeats_aggregated_as_client_go_does(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    async def scenario(kube: Kube) -> None:
        metrics = ControllerMetrics()
        kube.event_observer = metrics.count_event
        chaos = await kube.create(PODCHAOS, podchaos(namespace, "evented"))
        uid = chaos["metadata"]["uid"]

        async def events() -> list[dict[str, Any]]:
            items, _ = await kube.list_all(EVENTS, namespace, field_selector=f"involvedObject.uid={uid}")
            return items

        message = f"Successfully apply chaos for {namespace}/web-1"
        first = await kube.record_event(chaos, "Normal", "Applied", message)
        assert first is not None
        await asyncio.sleep(1.1)  # so lastTimestamp (second precision) moves
        for _ in range(2):
            assert await kube.record_event(chaos, "Normal", "Applied", message) is not None
        [applied] = await events()
        assert applied["count"] == 3
        assert applied["metadata"]["name"] == first["metadata"]["name"]
        assert applied["firstTimestamp"] == first["firstTimestamp"] < applied["lastTimestamp"]
        assert applied["source"] == {"component": "faultmesh-controller"}
        assert applied["reportingComponent"] == "faultmesh-controller"
        assert applied["involvedObject"]["uid"] == uid
        assert applied["involvedObject"]["kind"] == "PodChaos"
        assert applied["involvedObject"]["apiVersion"] == "chaos-mesh.org/v1alpha1"
        assert (applied["type"], applied["reason"], applied["message"]) == ("Normal", "Applied", message)

        # Ten different messages with one reason on one object: from the tenth on, one combined Event.
        for index in range(12):
            await kube.record_event(chaos, "Warning", "Failed", f"Failed to apply chaos: agent {index} unreachable")
        failed = [event for event in await events() if event["reason"] == "Failed"]
        single = [event for event in failed if not event["message"].startswith("(combined")]
        [combined] = [event for event in failed if event["message"].startswith("(combined")]
        assert len(single) == 9 and all(event["count"] == 1 for event in single)
        assert combined["count"] == 3
        assert combined["message"] == "(combined from similar events): Failed to apply chaos: agent 11 unreachable"
        assert combined["type"] == "Warning"

        # Every call is counted, as Chaos Mesh's recorder counts them.
        def emitted(type_: str, reason: str) -> float | None:
            labels = {"type": type_, "reason": reason, "namespace": namespace}
            return metrics.registry.get_sample_value("chaos_controller_manager_emitted_event_total", labels)

        assert emitted("Normal", "Applied") == 3
        assert emitted("Warning", "Failed") == 12

        # The spam filter: a burst per object, then nothing until tokens come back (one per 5 minutes).
        kube.events = EventCorrelator(spam_burst=4)
        results = [await kube.record_event(chaos, "Normal", "Paused", "Experiment has been paused") for _ in range(6)]
        assert [result is not None for result in results] == [True] * 4 + [False] * 2
        [paused] = [event for event in await events() if event["reason"] == "Paused"]
        assert paused["count"] == 4

    run(cluster, scenario)


def test_concurrent_repeats_of_one_event_become_one_event(cluster: Cluster, crds: None, namespace: str) -> None:
    async def scenario(kube: Kube) -> None:
        chaos = await kube.create(PODCHAOS, podchaos(namespace, "crowded"))
        await asyncio.gather(*(kube.record_event(chaos, "Normal", "Started", "Experiment has started")
                               for _ in range(8)))
        items, _ = await kube.list_all(EVENTS, namespace,
                                       field_selector=f"involvedObject.uid={chaos['metadata']['uid']}")
        assert [(event["reason"], event["count"]) for event in items] == [("Started", 8)]
        assert not kube._event_locks, "per-object locks are dropped when unused"

    run(cluster, scenario)


def test_an_event_about_a_cluster_scoped_object_goes_to_default(cluster: Cluster, kwok_node_name: str) -> None:
    async def scenario(kube: Kube) -> None:
        node = await kube.get(NODES, kwok_node_name)
        written = await kube.record_event(node, "Normal", "Tested", f"node {kwok_node_name} seen")
        assert written is not None and written["metadata"]["namespace"] == "default"
        assert "namespace" not in written["involvedObject"]
        await kube.delete(EVENTS, written["metadata"]["name"], "default")

    run(cluster, scenario)


# ---- leader election -------------------------------------------------------------------------------------

LEASE_DURATION = 4.0
RENEW_DEADLINE = 3.0
RETRY_PERIOD = 0.5


class Candidate:
    """One replica: an elector with its own API client, and a record of when it led."""

    def __init__(self, kube: Kube, namespace: str, identity: str, *, release_on_cancel: bool = True):
        self.elector = LeaderElector(kube, namespace, "faultmesh-controller", identity, LEASE_DURATION,
                                     RENEW_DEADLINE, RETRY_PERIOD, release_on_cancel=release_on_cancel)
        self.identity = identity
        self.leading = False
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.work_cancelled = False
        self.task: asyncio.Task[None] | None = None

    async def lead(self) -> None:
        self.leading = True
        self.started_at = time.monotonic()
        try:
            await asyncio.Event().wait()  # the controller's work: runs until cancelled
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise
        finally:
            self.leading = False

    def stopped(self) -> None:
        self.stopped_at = time.monotonic()

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self.lead, self.stopped))

    async def kill(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def lease_record(kube: Kube, namespace: str) -> LeaseRecord:
    lease = await kube.get(LEASES, "faultmesh-controller", namespace)
    return LeaseRecord.from_spec(lease["spec"])


@contextlib.asynccontextmanager
async def candidates(cluster: Cluster, namespace: str, *identities: str, **options: Any) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        made = []
        for identity in identities:
            kube = await stack.enter_async_context(await Kube.connect(cluster.kubeconfig))
            made.append(Candidate(kube, namespace, identity, **options))
        try:
            yield made
        finally:
            for candidate in made:
                if candidate.task is not None and not candidate.task.done():
                    await candidate.kill()


async def watch_leaders(group: list[Candidate], seconds: float) -> set[str]:
    """Sample who leads for ``seconds``; fails at once if two ever lead together."""
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        leaders = [c.identity for c in group if c.leading]
        assert len(leaders) <= 1, f"two leaders at once: {leaders}"
        seen.update(leaders)
        await asyncio.sleep(0.02)
    return seen


def test_exactly_one_of_two_candidates_leads(cluster: Cluster, namespace: str) -> None:
    async def scenario(kube: Kube) -> None:
        async with candidates(cluster, namespace, "replica-a", "replica-b") as (a, b):
            a.start()
            b.start()
            await wait_until("a leader", lambda: a.leading or b.leading)
            leader = a if a.leading else b
            assert await watch_leaders([a, b], 2 * LEASE_DURATION) == {leader.identity}
            record = await lease_record(kube, namespace)
            assert record.holder == leader.identity
            assert record.lease_duration_s == 4 and record.transitions == 0
            assert record.renew_time and record.acquire_time and record.renew_time > record.acquire_time
            assert a.elector.leader == b.elector.leader == leader.identity

    run(cluster, scenario)


def test_a_standby_takes_over_within_the_lease_duration_after_the_leader_dies(
    cluster: Cluster, namespace: str
) -> None:
    async def scenario(kube: Kube) -> None:
        # release_on_cancel off: killing the task is a crash, the lease is left as it was.
        async with candidates(cluster, namespace, "replica-a", "replica-b", release_on_cancel=False) as (a, b):
            a.start()
            await wait_until("a leads", lambda: a.leading)
            b.start()
            await watch_leaders([a, b], 1.5)
            before = await lease_record(kube, namespace)
            await a.kill()
            killed_at = time.monotonic()
            assert a.work_cancelled
            await wait_until("b takes over", lambda: b.leading, timeout=3 * LEASE_DURATION)
            took = time.monotonic() - killed_at
            # Never before the lease could have expired; soon after it did (one jittered retry period).
            assert LEASE_DURATION - RETRY_PERIOD - 0.2 <= took <= LEASE_DURATION + 2 * RETRY_PERIOD * 2.2 + 1.0, took
            after = await lease_record(kube, namespace)
            assert after.holder == "replica-b"
            assert after.transitions == before.transitions + 1
            assert after.acquire_time != before.acquire_time
            assert await watch_leaders([a, b], 1.0) == {"replica-b"}

    run(cluster, scenario)


def test_a_clean_shutdown_releases_the_lease_for_an_immediate_takeover(cluster: Cluster, namespace: str) -> None:
    async def scenario(kube: Kube) -> None:
        async with candidates(cluster, namespace, "replica-a", "replica-b") as (a, b):
            a.start()
            await wait_until("a leads", lambda: a.leading)
            b.start()
            await asyncio.sleep(2 * RETRY_PERIOD)
            await a.kill()
            assert a.stopped_at is not None, "on_stopped_leading runs after the work stopped"
            released = await lease_record(kube, namespace)
            if released.holder == "":  # b may already have taken it
                assert released.lease_duration_s == 1
            took = await wait_until("b takes over", lambda: b.leading, timeout=LEASE_DURATION)
            assert took < LEASE_DURATION - 1, f"a released lease is taken at the next retry, not after {took:.1f} s"
            assert (await lease_record(kube, namespace)).holder == "replica-b"

    run(cluster, scenario)


class Partition:
    """A TCP relay in front of the API server that the test can cut, as a network partition would."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
            self.writers += [client_writer, upstream_writer]
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

        self.server = await asyncio.start_server(relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


def test_a_leader_cut_off_from_the_api_steps_down_before_the_standby_takes_over(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    async def scenario(kube: Kube) -> None:
        host, _, port = cluster.server.removeprefix("https://").rpartition(":")
        partition = Partition(host, int(port))
        relay_port = await partition.start()
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = f"https://{host}:{relay_port}"
        relayed_config = tmp_path / "relayed-kubeconfig"
        relayed_config.write_text(yaml.safe_dump(config))

        async with await Kube.connect(relayed_config) as relayed, await Kube.connect(cluster.kubeconfig) as direct:
            a = Candidate(relayed, namespace, "replica-a")
            b = Candidate(direct, namespace, "replica-b")
            a.start()
            await wait_until("a leads", lambda: a.leading)
            b.start()
            try:
                await watch_leaders([a, b], 1.5)
                await partition.cut()
                cut_at = time.monotonic()
                await wait_until("a steps down", lambda: a.task is not None and a.task.done(),
                                 timeout=RENEW_DEADLINE + 2 * RETRY_PERIOD + 2)
                assert a.work_cancelled and a.stopped_at is not None
                assert a.stopped_at - cut_at <= RENEW_DEADLINE + 2 * RETRY_PERIOD + 1
                await wait_until("b takes over", lambda: b.leading, timeout=3 * LEASE_DURATION)
                assert b.started_at is not None and b.started_at > a.stopped_at, "the two terms must not overlap"
            finally:
                for candidate in (a, b):
                    if candidate.task is not None and not candidate.task.done():
                        await candidate.kill()

    run(cluster, scenario)


# ---- metrics ---------------------------------------------------------------------------------------------


def conditions(**flags: bool) -> list[dict[str, str]]:
    return [{"type": name, "status": "True" if value else "False"} for name, value in flags.items()]


def record(phase: str) -> dict[str, Any]:
    return {"id": "ns/pod", "selectorKey": ".", "phase": phase, "injectedCount": 1, "recoveredCount": 0,
            "events": []}


def test_experiment_gauge_counts_each_phase_as_chaos_mesh_does(cluster: Cluster, crds: None, namespace: str) -> None:
    running = {"conditions": conditions(Selected=True, AllInjected=True, AllRecovered=False, Paused=False),
               "experiment": {"desiredPhase": "Run", "containerRecords": [record("Injected")]}}
    paused = {"conditions": conditions(Selected=True, AllInjected=False, AllRecovered=True, Paused=True),
              "experiment": {"desiredPhase": "Stop", "containerRecords": [record("Not Injected")]}}
    stopped = {"conditions": conditions(Selected=True, AllInjected=False, AllRecovered=True, Paused=False),
               "experiment": {"desiredPhase": "Stop", "containerRecords": [record("Not Injected")]}}
    killed = {"conditions": conditions(Selected=True, AllInjected=True, AllRecovered=False, Paused=False),
              "experiment": {"desiredPhase": "Run", "containerRecords": [record("Injected")]}}
    expected = {
        "injecting": {"fresh", "selected-only", "stopped-early"},
        "running": {"running"},
        "paused": {"paused"},
        "finished": {"killed", "time-up"},
        "deleting": {"deleting"},
    }

    async def scenario(kube: Kube) -> None:
        await kube.create(PODCHAOS, podchaos(namespace, "fresh"))
        await kube.create(PODCHAOS, podchaos(namespace, "selected-only", status={
            "conditions": conditions(Selected=True, AllInjected=False, AllRecovered=False, Paused=False),
            "experiment": {"desiredPhase": "Run", "containerRecords": [record("Not Injected")]}}))
        await kube.create(PODCHAOS, podchaos(namespace, "running", status=running))
        await kube.create(PODCHAOS, podchaos(namespace, "paused", status=paused))
        # Stopped but its duration not over: Chaos Mesh does not call that finished.
        await kube.create(PODCHAOS, podchaos(namespace, "stopped-early", status=stopped))
        await kube.create(PODCHAOS, podchaos(namespace, "killed", action="pod-kill", duration=None, status=killed))
        await kube.create(PODCHAOS, podchaos(namespace, "time-up", duration="1s", status=stopped))
        held = podchaos(namespace, "deleting", status=running)
        held["metadata"]["finalizers"] = ["faultmesh.io/test-hold"]
        await kube.create(PODCHAOS, held)
        await kube.delete(PODCHAOS, "deleting", namespace)
        try:
            informer: Informer[dict[str, Any]] = Informer(kube, PODCHAOS, namespace)
            informer.start()
            await informer.wait_synced(20)
            await wait_until("8 experiments", lambda: len(informer) == 8)
            await asyncio.sleep(1.2)  # time-up's one second is over

            def experiments() -> Iterator[tuple[str, str, str]]:
                for obj in informer:
                    one_shot = obj["spec"]["action"] in ("pod-kill", "container-kill")
                    yield obj["metadata"]["namespace"], obj["kind"], chaos_status(obj, one_shot=one_shot,
                                                                                  now=time.time())

            metrics = ControllerMetrics(Sources(experiments=experiments, schedules=lambda: [namespace] * 2))
            server = await serve_metrics(metrics, 0, "127.0.0.1")
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                        assert response.status == 200
                        text = await response.text()
                    async with session.get(f"http://127.0.0.1:{server.port}/healthz") as response:
                        assert response.status == 200
            finally:
                await server.close()
                await informer.stop()
            families = {family.name: family for family in text_string_to_metric_families(text)}
            gauge = families["chaos_controller_manager_chaos_experiments"]
            counts = {sample.labels["phase"]: sample.value for sample in gauge.samples
                      if sample.labels["namespace"] == namespace}
            assert counts == {phase: len(names) for phase, names in expected.items()}
            assert all(sample.labels["kind"] == "PodChaos" for sample in gauge.samples)
            by_name = {obj["metadata"]["name"]: chaos_status(obj, one_shot=obj["spec"]["action"] == "pod-kill",
                                                             now=time.time()) for obj in informer}
            assert {name: phase for phase, names in expected.items() for name in names} == by_name
            schedules = families["chaos_controller_manager_chaos_schedules"]
            assert [(s.labels, s.value) for s in schedules.samples] == [({"namespace": namespace}, 2.0)]
            for histogram in ("faultmesh_controller_inject_seconds", "faultmesh_controller_recover_seconds"):
                assert families[histogram].type == "histogram"
        finally:
            await kube.merge_patch(PODCHAOS, "deleting", {"metadata": {"finalizers": None}}, namespace)

    run(cluster, scenario)


def test_metrics_port_in_use_is_reported() -> None:
    async def scenario() -> None:
        first = await serve_metrics(ControllerMetrics(), 0, "127.0.0.1")
        try:
            with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{first.port}"):
                await serve_metrics(ControllerMetrics(), first.port, "127.0.0.1")
        finally:
            await first.close()

    asyncio.run(scenario())

