"""The pod key → experiments index that decides which experiments a pod's change wakes.

Its answer must be what a scan of every record of every cached experiment gives (the controller's way before the
index): the scan is kept here as the reference, and the index is checked against it after any sequence of changes.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from faultmesh.controller.informer import Change
from faultmesh.controller.kube import Kube
from faultmesh.controller.main import Controller, ControllerConfig, WatchedPod
from faultmesh.controller.metrics import ControllerMetrics, Sources
from faultmesh.controller.recordindex import ExperimentKey, RecordIndex, record_pod_key

WEB = ("PodChaos", "shop", "web-failure")
NET = ("NetworkChaos", "shop", "web-delay")
NEW = ("PodChaos", "shop", "fresh")


def experiment(*record_ids: str | None) -> dict[str, Any]:
    """An experiment's object; ``experiment(None)`` has no records list yet (it has not selected its targets)."""
    if record_ids == (None,):
        return {"metadata": {"name": "x"}, "status": {"conditions": []}}
    records = [{"id": record_id, "selectorKey": ".", "phase": "Injected"} for record_id in record_ids]
    return {"metadata": {"name": "x"}, "status": {"experiment": {"containerRecords": records}}}


def scanned(experiments: dict[ExperimentKey, dict[str, Any]], pod_key: str) -> list[ExperimentKey]:
    """The experiments a pod's change concerns, found by scanning every record (the reference)."""
    found = []
    for key, obj in experiments.items():
        records = ((obj.get("status") or {}).get("experiment") or {}).get("containerRecords")
        if records is None or any(str(r.get("id", "")).startswith(pod_key + "/") or r.get("id") == pod_key
                                  for r in records):
            found.append(key)
    return sorted(found)


def test_record_ids_name_their_pod() -> None:
    assert record_pod_key("shop/web-0") == "shop/web-0"
    assert record_pod_key("shop/web-0/app") == "shop/web-0"
    assert record_pod_key("shop/web-0/app/eth0") == "shop/web-0"


def test_added_experiments_are_found_by_the_pods_they_record() -> None:
    index = RecordIndex()
    index.update(WEB, experiment("shop/web-0", "shop/web-1"))
    index.update(NET, experiment("shop/web-1/app"))
    assert index.experiments("shop/web-0") == [WEB]
    assert index.experiments("shop/web-1") == [NET, WEB]
    # A key that merely begins like a recorded pod's is another pod.
    assert index.experiments("shop/web") == []
    assert index.experiments("shop/web-10") == []


def test_experiments_without_records_yet_wait_for_every_pod() -> None:
    index = RecordIndex()
    index.update(WEB, experiment("shop/web-0"))
    index.update(NEW, experiment(None))
    assert index.experiments("shop/anything") == [NEW]
    assert index.experiments("shop/web-0") == [NEW, WEB]
    # Once it records its targets it no longer waits; a selection that found nothing waits no more either.
    index.update(NEW, experiment("shop/db-0"))
    assert index.experiments("shop/anything") == []
    assert index.experiments("shop/db-0") == [NEW]
    index.update(NEW, experiment())
    assert index.experiments("shop/db-0") == []


def test_record_changes_move_the_experiment_between_pods() -> None:
    index = RecordIndex()
    index.update(WEB, experiment("shop/web-0", "shop/web-1"))
    index.update(WEB, experiment("shop/web-1", "shop/web-2"))
    assert index.experiments("shop/web-0") == []
    assert index.experiments("shop/web-1") == [WEB]
    assert index.experiments("shop/web-2") == [WEB]
    # Back to no records list (a status written anew): it waits again, and recorded pods are forgotten.
    index.update(WEB, experiment(None))
    assert index.experiments("shop/web-1") == [WEB]
    assert index.experiments("shop/other") == [WEB]
    index.update(WEB, experiment("shop/web-2"))
    assert index.experiments("shop/web-1") == []


def test_deleted_experiments_are_forgotten() -> None:
    index = RecordIndex()
    index.update(WEB, experiment("shop/web-0"))
    index.update(NET, experiment("shop/web-0"))
    index.update(NEW, experiment(None))
    index.remove(WEB)
    index.remove(NEW)
    assert index.experiments("shop/web-0") == [NET]
    index.remove(NET)
    index.remove(NET)  # twice, or never indexed: nothing to do
    assert index.experiments("shop/web-0") == []
    assert index._recording == {} and index._pods_of == {} and index._waiting == set()


def test_malformed_records_name_no_pod() -> None:
    index = RecordIndex()
    index.update(WEB, {"status": {"experiment": {"containerRecords": ["shop/web-0", {"phase": "Injected"}]}}})
    index.update(NET, {"status": {"experiment": {"containerRecords": "shop/web-0"}}})
    assert index.experiments("shop/web-0") == []
    assert index.experiments("") == []


pod_keys = st.sampled_from(["shop/web-0", "shop/web-1", "shop/web-10", "shop/db-0", "other/web-0"])
record_ids = pod_keys | st.tuples(pod_keys, st.sampled_from(["app", "sidecar", "app/eth0"])).map("/".join)
objects = st.none() | st.lists(record_ids, max_size=4)
experiment_keys = st.sampled_from([WEB, NET, NEW, ("StressChaos", "other", "burn")])
changes = st.lists(st.tuples(experiment_keys, objects, st.booleans()), max_size=25)


@given(changes=changes)
def test_the_index_answers_what_a_scan_of_every_record_answers(
    changes: list[tuple[ExperimentKey, list[str] | None, bool]]
) -> None:
    index = RecordIndex()
    cached: dict[ExperimentKey, dict[str, Any]] = {}
    for key, ids, deleted in changes:
        if deleted:
            cached.pop(key, None)
            index.remove(key)
        else:
            cached[key] = experiment(None) if ids is None else experiment(*ids)
            index.update(key, cached[key])
        for pod_key in ("shop/web-0", "shop/web-1", "shop/web-10", "shop/db-0", "other/web-0", "shop/web"):
            assert index.experiments(pod_key) == scanned(cached, pod_key)


def test_the_controller_keeps_the_index_from_experiment_changes_and_queues_by_it() -> None:
    controller = Controller(cast(Kube, object()), ControllerConfig(kinds=("PodChaos", "NetworkChaos")),
                            ControllerMetrics(Sources()))

    def experiment_change(type_: str, key: ExperimentKey, obj: dict[str, Any]) -> None:
        controller._experiment_changed(key[0])(Change(type_, key[1:], obj))  # type: ignore[arg-type]

    def queued_after_pod_change(namespace: str, name: str) -> list[ExperimentKey]:
        async def drain() -> list[ExperimentKey]:
            found = []
            while len(controller.queue):
                key = await controller.queue.get()
                controller.queue.done(key)
                found.append(key)
            return found

        asyncio.run(drain())
        pod = WatchedPod.of({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": namespace, "name": name},
                             "spec": {"containers": [{"name": "app", "image": "a:1"}]}})
        controller._pod_changed(Change("updated", (namespace, name), pod))
        return sorted(asyncio.run(drain()))

    experiment_change("added", WEB, experiment("shop/web-0"))
    experiment_change("added", NET, experiment("shop/web-1/app"))
    assert queued_after_pod_change("shop", "web-1") == [NET]
    experiment_change("updated", NET, experiment("shop/web-0/app"))
    assert queued_after_pod_change("shop", "web-1") == []
    assert queued_after_pod_change("shop", "web-0") == [NET, WEB]
    experiment_change("deleted", WEB, experiment("shop/web-0"))
    assert queued_after_pod_change("shop", "web-0") == [NET]
