"""Which experiments record which pods, so that a pod's change wakes only the experiments it concerns.

An experiment's status holds one record per target, and a record's id starts with its pod's key
(``namespace/name``; a container or finer target adds ``/…``). An experiment whose status has no records list
yet has not selected its targets: it waits for pods, and any pod's change wakes it. An empty list is a
selection that found nothing; like a list of other pods, it is not woken by this pod.

The index is fed every change of the experiment informers' caches (:meth:`RecordIndex.update`,
:meth:`RecordIndex.remove`), so it answers from the same objects the caches hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: (kind, namespace, name) of an experiment.
ExperimentKey = tuple[str, str, str]


def record_pod_key(record_id: str) -> str:
    """The ``namespace/name`` of the pod a record's id names."""
    return "/".join(record_id.split("/")[:2])


def recorded_pods(obj: Mapping[str, Any]) -> frozenset[str] | None:
    """The keys of the pods the experiment's records name; None when it has no records list yet."""
    records = ((obj.get("status") or {}).get("experiment") or {}).get("containerRecords")
    if records is None:
        return None
    listed: Iterable[Any] = records if isinstance(records, list) else ()
    return frozenset(record_pod_key(str(record["id"])) for record in listed
                     if isinstance(record, Mapping) and record.get("id"))


class RecordIndex:
    """Pod key → the experiments recording that pod, plus the experiments waiting for targets."""

    def __init__(self) -> None:
        self._pods_of: dict[ExperimentKey, frozenset[str]] = {}
        self._recording: dict[str, set[ExperimentKey]] = {}
        self._waiting: set[ExperimentKey] = set()

    def update(self, key: ExperimentKey, obj: Mapping[str, Any]) -> None:
        """The experiment was added or changed: index what its records name now."""
        pods = recorded_pods(obj)
        if pods is None:
            self.remove(key)
            self._waiting.add(key)
            return
        self._waiting.discard(key)
        before = self._pods_of.get(key, frozenset())
        if pods == before:
            return  # most writes change phases and events, not which pods are recorded
        for pod in before - pods:
            self._unlink(pod, key)
        for pod in pods - before:
            self._recording.setdefault(pod, set()).add(key)
        self._pods_of[key] = pods

    def remove(self, key: ExperimentKey) -> None:
        """The experiment is gone."""
        self._waiting.discard(key)
        for pod in self._pods_of.pop(key, frozenset()):
            self._unlink(pod, key)

    def experiments(self, pod_key: str) -> list[ExperimentKey]:
        """The experiments a change of the pod ``pod_key`` concerns, in a stable order."""
        return sorted(self._waiting | self._recording.get(pod_key, set()))

    def _unlink(self, pod: str, key: ExperimentKey) -> None:
        keys = self._recording.get(pod)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._recording[pod]
