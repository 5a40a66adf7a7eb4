"""One experiment, one reconcile: Chaos Mesh's controllers (finalizer, desired phase, records, conditions) in one pass.

Each pass reads the object (from the informer's cache), and moves it one step toward what it should be:

1. **Finalizer.** A live experiment gets ``chaos-mesh/records`` first (event FinalizerInited), so it cannot
   vanish with faults in place. A deleted one keeps it until every record is recovered — or until the
   annotation ``chaos-mesh.chaos-mesh.org/cleanFinalizer: forced`` says to let go (FinalizerRemoved).
2. **Desired phase** (:func:`faultmesh.engine.lifecycle.desired_phase`): deleted → Stop, one-shot → Run, duration
   elapsed since creation → Stop, paused → Stop, else Run; Deleted/TimeUp/Paused/Started events on change.
3. **Records.** Selected once (the pod index, Chaos Mesh's modes) and kept in ``status.experiment.
   containerRecords``; each moved toward the desired phase: apply/recover through the agent of the pod's node
   (over gRPC with the controller's owner lease), or through the API for pod-kill and pod-failure. A pod that
   vanished counts as recovered. An unreachable agent is a Failed event and a retry with backoff.
4. **Liveness.** A record the status calls Injected whose injection the agent no longer holds (its lease ran out
   while the controller was away) goes back to Not Injected, and is applied again while the phase is Run.
5. **Status** written back with the object's resourceVersion (the experiment CRDs have no status subresource,
   as in Chaos Mesh); a conflict just means another pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from faultmesh.api.base import Resource
from faultmesh.api.loader import ManifestError, parse_object
from faultmesh.engine.lifecycle import (
    INJECTED,
    NOT_INJECTED,
    RUN,
    Event,
    Facts,
    Record,
    RecordEvent,
    Status,
    after_apply,
    after_recover,
    desired_phase,
    failed,
    operation,
    parse_timestamp,
)
from faultmesh.kinds.experiment import (
    AgentWork,
    duration_of,
    injection_id,
    is_one_shot,
    recorded_selections,
    records_work,
    selector_key,
)
from faultmesh.kinds.plan import PlanError
from faultmesh.selection import Inventory, Pod, Scope, SelectionError, plan_experiment

from .recordindex import record_pod_key

log = logging.getLogger(__name__)

FINALIZER = "chaos-mesh/records"
FORCE_CLEAN_ANNOTATION = "chaos-mesh.chaos-mesh.org/cleanFinalizer"
PAUSE_ANNOTATION = "experiment.chaos-mesh.org/pause"
#: Kinds whose faults this controller can inject; others are recorded as NotSupported.
SUPPORTED_KINDS = ("PodChaos", "NetworkChaos", "StressChaos")
#: Pods acted on at once through the API (pod-kill, pod-failure) within one pass. One at a time, a pass over
#: 1,000 pods is 1,000-2,000 round trips in a row; overlapping them leaves the client's rate limit as the pace.
API_SIDE_CONCURRENCY = 16


class ApiActions(Protocol):
    """What a pass needs from the API server (see :mod:`.kube`)."""

    async def update_experiment(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]: ...
    async def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...
    async def kill_pod(self, namespace: str, name: str, grace_period: int | None) -> None: ...
    async def fail_pod(self, namespace: str, name: str, chaos_name: str, containers: Sequence[str]) -> None: ...
    async def restore_pod(self, namespace: str, name: str, chaos_name: str) -> None: ...


class AgentActions(Protocol):
    """What a pass needs from the node agents (see :mod:`.agents`)."""

    async def apply(self, node: str, work: AgentWork, owner: str, lease_ttl: float) -> str | None: ...
    async def recover(self, node: str, injection: str, reason: str) -> str | None: ...
    def alive(self, node: str) -> set[str] | None: ...


class PodSource(Protocol):
    """The pod index: an :class:`Inventory` for selection, and pods by ``namespace/name``."""

    def inventory(self) -> Inventory: ...
    def pods(self) -> Mapping[str, Pod]: ...


class ConflictError(Exception):
    """The object changed under this pass; the next pass starts from the new version."""


@dataclass(frozen=True)
class Outcome:
    """What the queue should do next with this object."""

    #: Seconds until a time-driven change (duration end); None: wait for a watch event.
    recheck_in: float | None = None
    #: Something failed and should be retried with backoff.
    retry: bool = False


class Reconciler:
    def __init__(
        self,
        api: ApiActions,
        agents: AgentActions,
        pods: PodSource,
        *,
        owner: str,
        lease_ttl: float = 30.0,
        scope: Scope | None = None,
        allow_host_network: bool = False,
        clock: Callable[[], float] = time.time,
        observe: Callable[[str, str, float], None] | None = None,
        wrote: Callable[[str, Mapping[str, Any], str], None] | None = None,
    ) -> None:
        self.api = api
        self.agents = agents
        self.pods = pods
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.scope = scope
        self.allow_host_network = allow_host_network
        self.clock = clock
        #: (kind, "inject"|"recover", seconds) for the latency histograms.
        self.observe = observe
        #: (kind, the object as written, the resourceVersion the write replaced) after each successful write.
        self.wrote = wrote

    async def reconcile(self, kind: str, obj: dict[str, Any]) -> Outcome:
        metadata = obj.setdefault("metadata", {})
        annotations = metadata.get("annotations") or {}
        finalizers = list(metadata.get("finalizers") or [])
        deleted = bool(metadata.get("deletionTimestamp"))
        if deleted and annotations.get(FORCE_CLEAN_ANNOTATION) == "forced":
            if FINALIZER in finalizers:
                metadata["finalizers"] = [f for f in finalizers if f != FINALIZER]
                await self._update(kind, obj)
                await self.api.emit(obj, "Normal", "FinalizerInited", "Finalizer has been removed")
            return Outcome()
        if not deleted and FINALIZER not in finalizers:
            metadata["finalizers"] = [*finalizers, FINALIZER]
            await self._update(kind, obj)
            await self.api.emit(obj, "Normal", "FinalizerInited", "Finalizer has been inited")
            return Outcome(recheck_in=0.0)
        if deleted and FINALIZER not in finalizers:
            return Outcome()  # someone else's finalizer holds it; nothing of ours is left

        try:
            resource = parse_object(obj)
        except ManifestError as invalid:
            await self.api.emit(obj, "Warning", "Failed", f"Failed to read the experiment: {invalid}")
            return Outcome()
        uid = str(metadata.get("uid") or "")
        paused = annotations.get(PAUSE_ANNOTATION) == "true"
        status = Status.from_wire(obj.get("status"), paused=paused)
        now = self.clock()
        created = parse_timestamp(metadata["creationTimestamp"]) if metadata.get("creationTimestamp") else now
        one_shot = is_one_shot(resource)
        facts = Facts(created_at=created, duration=duration_of(resource), one_shot=one_shot, paused=paused,
                      deleted=deleted)
        decision = desired_phase(facts, status.desired, now)
        events: list[Event] = list(decision.events)
        status = replace(status, desired=decision.phase)
        retry = False

        if status.records is None:
            if deleted:
                return await self._release(kind, obj, status, events)
            if kind not in SUPPORTED_KINDS:
                events.append(Event("Warning", "NotSupported", f"{kind} is not supported by faultmesh's agent yet"))
                await self._write(kind, obj, status, events)
                return Outcome()
            records, problem = self._select(resource, uid)
            if problem is not None:
                events.append(failed("select targets", problem))
                await self._write(kind, obj, replace(status, records=None), events)
                return Outcome(retry=True)
            status = replace(status, records=tuple(records))

        records = list(status.records or ())
        pods = self.pods.pods()
        if decision.phase == RUN and not _api_side(resource):  # pod-failure holds nothing on an agent
            # Only a running experiment injects again what its agent lost; a stopping one recovers it as usual
            # (the agent answers that it is gone already), with the Recovered event and count that belong to it.
            records = self._check_alive(uid, records, pods, events, one_shot)
        works = await self._works(resource, uid, records, pods)

        async def move(record: Record, op: str) -> tuple[Record, Event, str | None]:
            started = self.clock()
            if op == "apply":
                problem = await self._apply(resource, uid, record, pods, works)
                moved, event = after_apply(record, problem, self.clock())
            else:
                problem = await self._recover(resource, uid, record, pods)
                moved, event = after_recover(record, problem, self.clock())
            if problem is None and self.observe is not None:
                self.observe(kind, "inject" if op == "apply" else "recover", self.clock() - started)
            return moved, event, problem

        todo = [(index, record, op) for index, record in enumerate(records)
                if (op := operation(decision.phase, record)) is not None]
        if _api_side(resource):
            # Each record is its own pod and each action catches its errors, so they may overlap.
            gate = asyncio.Semaphore(API_SIDE_CONCURRENCY)

            async def gated(record: Record, op: str) -> tuple[Record, Event, str | None]:
                async with gate:
                    return await move(record, op)

            moves = await asyncio.gather(*(gated(record, op) for _, record, op in todo))
        else:
            # Agent work stays one at a time: the records of one pod share its network namespace and cgroups.
            moves = [await move(record, op) for _, record, op in todo]
        for (index, _, _), (moved, event, problem) in zip(todo, moves, strict=True):
            records[index] = moved
            retry = retry or problem is not None
            events.append(event)
        status = replace(status, records=tuple(records))
        if deleted and all(r.phase == NOT_INJECTED for r in records):
            return await self._release(kind, obj, status, events)
        await self._write(kind, obj, status, events)
        return Outcome(recheck_in=decision.recheck_in, retry=retry)

    # ---- selection ---------------------------------------------------------------------------------------

    def _select(self, resource: Resource, uid: str) -> tuple[list[Record], str | None]:
        try:
            plans = plan_experiment(resource, self.pods.inventory(), scope=self.scope)
        except SelectionError as error:
            return [], str(error)
        selections = {}
        for plan in plans:
            if plan.selection.empty:
                return [], "no target has been selected" + (f" ({plan.selection.reason})" if plan.selection.reason
                                                             else "")
            selections[selector_key(plan.path)] = plan.selection
        if _api_side(resource):
            # pod-kill and pod-failure act on pods through the API: one record per pod, no container needed.
            return [Record(pod.key, key) for key, selection in selections.items() for pod in selection.pods], None
        try:
            works = records_work(resource, uid, selections, allow_host_network=self.allow_host_network)
        except PlanError as error:
            return [], str(error)
        return [Record(w.record_id, w.selector_key) for w in works], None

    async def _works(self, resource: Resource, uid: str, records: Sequence[Record],
                     pods: Mapping[str, Pod]) -> dict[tuple[str, str], tuple[AgentWork, ...] | str]:
        """Each record's agent work from the pods as they are now; a string says why there is none."""
        pending = [r for r in records if r.phase != INJECTED]
        if not pending or _api_side(resource):
            return {}
        selections, _ = recorded_selections([(r.id, r.selector_key) for r in records], pods)
        try:
            planned = records_work(resource, uid, selections, allow_host_network=self.allow_host_network)
        except PlanError as error:
            return {(r.id, r.selector_key): str(error) for r in pending}
        return {(w.record_id, w.selector_key): w.works for w in planned}

    # ---- records -----------------------------------------------------------------------------------------

    def _check_alive(self, uid: str, records: list[Record], pods: Mapping[str, Pod], events: list[Event],
                     one_shot: bool) -> list[Record]:
        """Records called Injected whose injection the agent no longer holds go back to Not Injected."""
        if one_shot:
            return records
        checked: list[Record] = []
        for record in records:
            pod = pods.get(record_pod_key(record.id))
            current = record
            if record.phase == INJECTED and pod is not None and pod.node_name:
                alive = self.agents.alive(pod.node_name)
                ident = injection_id(uid, record.selector_key, record.id)
                if alive is not None and ident not in alive:
                    message = "the agent no longer holds this fault (its lease ran out); injecting it again"
                    current = replace(record, phase=NOT_INJECTED,
                                      events=(*record.events, RecordEvent("Failed", "Apply", self.clock(), message)))
                    events.append(failed("keep chaos", f"{record.id}: {message}"))
            checked.append(current)
        return checked

    async def _apply(self, resource: Resource, uid: str, record: Record, pods: Mapping[str, Pod],
                     works: Mapping[tuple[str, str], tuple[AgentWork, ...] | str]) -> str | None:
        pod = pods.get(record_pod_key(record.id))
        if pod is None:
            return f"pod {record_pod_key(record.id)} not found"
        action = getattr(getattr(resource, "spec", None), "action", None)
        if resource.kind == "PodChaos" and action == "pod-kill":
            # Chaos Mesh always sends spec.gracePeriod, whose zero value (unset) deletes at once; not the pod's own.
            grace = getattr(getattr(resource, "spec", None), "grace_period", None) or 0
            try:
                await self.api.kill_pod(pod.namespace, pod.name, grace)
            except Exception as error:
                return f"kill pod {pod.key}: {error}"
            return None
        if resource.kind == "PodChaos" and action == "pod-failure":
            try:
                await self.api.fail_pod(pod.namespace, pod.name, resource.metadata.name or "",
                                        [c.name for c in pod.containers])
            except Exception as error:
                return f"swap the images of {pod.key}: {error}"
            return None
        planned = works.get((record.id, record.selector_key), ())
        if isinstance(planned, str):
            return planned
        for work in planned:
            refused = await self.agents.apply(pod.node_name, work, self.owner, self.lease_ttl)
            if refused is not None:
                return refused
        return None

    async def _recover(self, resource: Resource, uid: str, record: Record, pods: Mapping[str, Pod]) -> str | None:
        pod = pods.get(record_pod_key(record.id))
        if pod is None:
            return None  # the pod is gone, and its faults with it
        action = getattr(getattr(resource, "spec", None), "action", None)
        if resource.kind == "PodChaos" and action == "pod-kill":
            return None  # one-shot: nothing to take back
        if resource.kind == "PodChaos" and action == "pod-failure":
            try:
                await self.api.restore_pod(pod.namespace, pod.name, resource.metadata.name or "")
            except Exception as error:
                return f"restore the images of {pod.key}: {error}"
            return None
        if resource.kind == "PodChaos":
            return None  # container-kill is one-shot too
        return await self.agents.recover(pod.node_name, injection_id(uid, record.selector_key, record.id),
                                         "the experiment stopped")

    # ---- writing -----------------------------------------------------------------------------------------

    async def _write(self, kind: str, obj: dict[str, Any], status: Status, events: list[Event]) -> None:
        wire = status.to_wire()
        if obj.get("status") != wire:
            obj["status"] = wire
            await self._update(kind, obj)
        for event in events:
            await self.api.emit(obj, event.type, event.reason, event.message)

    async def _release(self, kind: str, obj: dict[str, Any], status: Status, events: list[Event]) -> Outcome:
        """Everything is recovered: the final status and the finalizer's removal in one write, and the object goes."""
        metadata = obj["metadata"]
        obj["status"] = status.to_wire()
        metadata["finalizers"] = [f for f in metadata.get("finalizers") or [] if f != FINALIZER]
        await self._update(kind, obj)
        for event in events:
            await self.api.emit(obj, event.type, event.reason, event.message)
        await self.api.emit(obj, "Normal", "FinalizerInited", "Finalizer has been removed")
        return Outcome()

    async def _update(self, kind: str, obj: dict[str, Any]) -> None:
        replaced = str(obj["metadata"].get("resourceVersion") or "")
        updated = await self.api.update_experiment(kind, obj)
        # Not the new resourceVersion: a write that drops a deleted object's last finalizer deletes the object
        # and answers with the version it replaced.
        if self.wrote is not None:
            self.wrote(kind, obj, replaced)
        obj["metadata"]["resourceVersion"] = updated.get("metadata", {}).get("resourceVersion")


def _api_side(resource: Resource) -> bool:
    action = getattr(getattr(resource, "spec", None), "action", None)
    return resource.kind == "PodChaos" and action in ("pod-kill", "pod-failure")


def decision_phase(status: Mapping[str, Any] | None) -> str:
    return str(((status or {}).get("experiment") or {}).get("desiredPhase") or "")


__all__ = ["FINALIZER", "RUN", "ConflictError", "Outcome", "Reconciler"]
