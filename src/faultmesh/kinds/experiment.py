"""From a selected experiment to the agent work of each of its records.

An experiment has one record per target (Chaos Mesh: ``ns/pod`` for pod selectors, ``ns/pod/container``
for container selectors; NetworkChaos adds its ``target`` pods under selector key ``.Target``). Each record
becomes at most one agent injection: an engine kind (a key of the agent's planner registry), the fault's spec
in wire form, the container it acts on, and its slot when faults of one device must form one tc tree. A
record can have nothing to do (a NetworkChaos ``to`` delay leaves its target pods alone) and still be
recorded, as Chaos Mesh does.

A record usually has one injection; a pod-kill in host mode has one per container of the pod (there is no
kubelet to delete the pod through, so each container's task is killed).

Both front ends call :func:`records_work`; name resolution of external targets is theirs (I/O), passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.base import Resource
from ..api.networkchaos import NetworkChaosSpec, split_external_target
from ..api.podchaos import PodChaosSpec
from ..api.stresschaos import StressChaosSpec
from ..api.types import duration_seconds
from ..selection import ContainerTarget, Pod, Selection
from .network import (
    FACT_IPS,
    PARTITION_KIND,
    TRAFFIC_CONTROL_KIND,
    PartitionFault,
    Side,
    TrafficFault,
    fault_to_wire,
    partition_fault,
    traffic_control_slot,
    traffic_fault,
)
from .network_sets import Peer
from .plan import PlanError, Target

SOURCE_KEY = "."
TARGET_KEY = ".Target"

#: Turns a host name into its addresses (the front end's resolver; DNS is I/O).
Resolver = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class AgentWork:
    """One injection for the agent of the record's node."""

    injection_id: str
    #: The agent's planner kind: StressChaos, PodChaos, NetworkPartition, NetworkTrafficControl.
    kind: str
    spec: Mapping[str, Any]
    target: Target
    slot: str | None = None


@dataclass(frozen=True)
class RecordWork:
    record_id: str
    selector_key: str
    pod: Pod
    #: Empty: Chaos Mesh records the target but has nothing to do on it.
    works: tuple[AgentWork, ...]
    notes: tuple[str, ...] = field(default=())


def selector_key(path: Sequence[str | int]) -> str:
    """``spec`` → ``.``, ``spec.target`` → ``.Target`` (Chaos Mesh's GetSelectorSpecs keys)."""
    rest = [str(part) for part in path[1:]]
    return SOURCE_KEY if not rest else "." + ".".join(part[:1].upper() + part[1:] for part in rest)


def duration_of(resource: Resource) -> float | None:
    """``spec.duration`` in seconds, or None when it runs until deleted."""
    text = getattr(getattr(resource, "spec", None), "duration", None)
    return None if not text else duration_seconds(str(text))


def is_one_shot(resource: Resource) -> bool:
    check = getattr(resource, "is_one_shot", None)
    return bool(check()) if callable(check) else False


def injection_id(uid: str, key: str, record_id: str) -> str:
    """Stable across restarts of a front end, so a re-sent apply meets the injection it already made."""
    return f"{uid}/{key}/{record_id}"


def records_work(
    resource: Resource,
    uid: str,
    selections: Mapping[str, Selection],
    *,
    resolve: Resolver | None = None,
    allow_host_network: bool = False,
) -> list[RecordWork]:
    """The records of ``resource`` (selected as ``selections``, keyed by selector key) and their agent work.

    Raises :class:`PlanError` naming the field when the experiment cannot be done on these targets.
    """
    spec = getattr(resource, "spec", None)
    if isinstance(spec, NetworkChaosSpec):
        return _network(spec, uid, selections, resolve, allow_host_network)
    if isinstance(spec, StressChaosSpec):
        wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        return _per_container(selections, lambda target, rid: AgentWork(injection_id(uid, SOURCE_KEY, rid),
                                                                        "StressChaos", wire, target))
    if isinstance(spec, PodChaosSpec):
        return _pod_chaos(spec, uid, selections)
    raise PlanError("kind", f"{resource.kind} is not injected by the node agent yet (supported here: "
                            "PodChaos, NetworkChaos, StressChaos)")


def _selected(selection: Selection | None, path: str) -> Selection:
    # Chaos Mesh refuses to start when a selector picks nothing; going on would widen a NetworkChaos whose
    # target is empty to all traffic.
    if selection is None or selection.empty:
        reason = selection.reason if selection is not None and selection.reason else "no target has been selected"
        raise PlanError(path, f"selected nothing: {reason}")
    return selection


def _source(selections: Mapping[str, Selection]) -> Selection:
    return _selected(selections.get(SOURCE_KEY), "spec.selector")


def _target_of(container_id: str | None, record_id: str, pod: Pod, path: str) -> Target:
    if not container_id:
        raise PlanError(path, f"{record_id}: the container has not started (no containerID in its status)")
    return Target(container_id, record_id, {FACT_IPS: list(pod.pod_ips)})


def _per_container(
    selections: Mapping[str, Selection], make: Callable[[Target, str], AgentWork]
) -> list[RecordWork]:
    records: list[RecordWork] = []
    for container in _source(selections).containers:
        target = _target_of(container.container_id, container.id, container.pod, "spec.selector")
        records.append(RecordWork(container.id, SOURCE_KEY, container.pod, (make(target, container.id),)))
    return records


def _pod_chaos(spec: PodChaosSpec, uid: str, selections: Mapping[str, Selection]) -> list[RecordWork]:
    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    if spec.action == "container-kill":
        return _per_container(
            selections, lambda target, rid: AgentWork(injection_id(uid, SOURCE_KEY, rid), "PodChaos", wire, target)
        )
    if spec.action == "pod-kill":
        # Without a kubelet to delete the pod through, killing a pod means killing each of its containers.
        records: list[RecordWork] = []
        for pod in _source(selections).pods:
            statuses = [status for status in pod.container_statuses if status.container_id]
            if not statuses:
                raise PlanError("spec.selector", f"{pod.key}: no container of the pod has started")
            works = tuple(
                AgentWork(
                    injection_id(uid, SOURCE_KEY, f"{pod.key}/{status.name}"),
                    "PodChaos",
                    {**wire, "action": "container-kill", "containerNames": [status.name]},
                    Target(str(status.container_id), pod.key, {FACT_IPS: list(pod.pod_ips)}),
                )
                for status in statuses
            )
            records.append(RecordWork(pod.key, SOURCE_KEY, pod, works))
        return records
    raise PlanError("spec.action", f"{spec.action} swaps the pod's images through the Kubernetes API; "
                                   "it has no meaning without a cluster")


# ---- NetworkChaos ------------------------------------------------------------------------------------


def pod_peers(pods: Sequence[Pod], path: str) -> list[Peer]:
    peers: list[Peer] = []
    for pod in pods:
        if not pod.pod_ips:
            raise PlanError(path, f"{pod.key} has no IP address yet")
        peers.extend(Peer(address) for address in pod.pod_ips)
    return peers


def external_peers(spec: NetworkChaosSpec, resolve: Resolver | None) -> list[Peer]:
    """``externalTargets`` as peers: IPs and CIDRs as they are, host names through ``resolve``."""
    peers: list[Peer] = []
    for index, text in enumerate(spec.external_targets or ()):
        path = f"spec.externalTargets[{index}]"
        try:
            external = split_external_target(text)
        except ValueError as error:
            raise PlanError(path, str(error)) from None
        try:
            ipaddress.ip_network(external.host, strict=False)
            addresses: Sequence[str] = [external.host]
        except ValueError:
            if resolve is None:
                raise PlanError(path, f"{external.host!r} is a host name and nothing here resolves names") from None
            addresses = resolve(external.host)
            if not addresses:
                raise PlanError(path, f"{external.host!r} does not resolve to any address") from None
        peers.extend(Peer(address, external.port) for address in addresses)
    return peers


def _network(
    spec: NetworkChaosSpec,
    uid: str,
    selections: Mapping[str, Selection],
    resolve: Resolver | None,
    allow_host_network: bool,
) -> list[RecordWork]:
    source = _source(selections)
    target = None if spec.target is None else _selected(selections.get(TARGET_KEY), "spec.target.selector")
    externals = external_peers(spec, resolve)
    target_pods = target.pods if target is not None else ()
    toward_targets = pod_peers(target_pods, "spec.target.selector") + externals
    toward_sources = pod_peers(source.pods, "spec.selector") if target is not None else []
    records: list[RecordWork] = []
    for key, pods, peers in ((SOURCE_KEY, source.pods, toward_targets), (TARGET_KEY, target_pods, toward_sources)):
        for pod in pods:
            records.append(_network_record(spec, uid, key, pod, peers, allow_host_network))
    return records


def _network_record(
    spec: NetworkChaosSpec, uid: str, key: str, pod: Pod, peers: Sequence[Peer], allow_host_network: bool
) -> RecordWork:
    path = "spec.selector" if key == SOURCE_KEY else "spec.target.selector"
    ident = injection_id(uid, key, pod.key)
    chosen_side: Side = "source" if key == SOURCE_KEY else "target"
    fault: PartitionFault | TrafficFault | None
    if spec.action == "partition":
        fault = partition_fault(spec, ident, side=chosen_side, peers=peers)
    else:
        fault = traffic_fault(spec, ident, side=chosen_side, peers=peers)
    if fault is None:
        # A pod that is only a peer is left alone, as in Chaos Mesh: no need for it to run, nor to refuse it.
        return RecordWork(pod.key, key, pod, (), (f"direction {spec.direction}: nothing to do on this side",))
    if pod.host_network and not allow_host_network:
        raise PlanError(path, f"{pod.key} uses the host's network: a network fault there would hit the "
                              "whole node; refused unless host-network targets are allowed")
    statuses = [status for status in pod.container_statuses if status.container_id]
    if not statuses:
        raise PlanError(path, f"{pod.key}: no container of the pod has started")
    # Every container of a pod shares its network namespace: the first started one stands for the pod.
    target = Target(str(statuses[0].container_id), pod.key, {FACT_IPS: list(pod.pod_ips)})
    if isinstance(fault, PartitionFault):
        return RecordWork(pod.key, key, pod, (AgentWork(ident, PARTITION_KIND, fault_to_wire(fault), target),))
    slot = traffic_control_slot(target, fault.device)
    work = AgentWork(ident, TRAFFIC_CONTROL_KIND, fault_to_wire(fault), target, slot)
    return RecordWork(pod.key, key, pod, (work,))


# ---- records already chosen ------------------------------------------------------------------------------


def recorded_selections(
    records: Sequence[tuple[str, str]], pods: Mapping[str, Pod]
) -> tuple[dict[str, Selection], list[str]]:
    """The selections that chose ``records`` ((record id, selector key) pairs), from the pods as they are now.

    A front end selects once and keeps the record ids (Chaos Mesh's status); later it needs each record's work
    again, built from the current pods (IPs and container ids may have changed, e.g. after a restart). A record
    whose pod is gone is returned in the second list: the caller counts it as recovered, or fails its apply.
    """
    chosen: dict[str, list[Pod]] = {}
    containers: dict[str, list[ContainerTarget]] = {}
    missing: list[str] = []
    for record_id, key in records:
        parts = record_id.split("/")
        pod = pods.get("/".join(parts[:2]))
        if pod is None:
            missing.append(record_id)
            continue
        if len(parts) > 2:
            name = "/".join(parts[2:])
            status = next((s for s in pod.container_statuses if s.name == name), None)
            containers.setdefault(key, []).append(
                ContainerTarget(pod, name, status.container_id if status is not None else None))
            if pod not in chosen.setdefault(key, []):
                chosen[key].append(pod)
        else:
            chosen.setdefault(key, []).append(pod)
    selections: dict[str, Selection] = {}
    for key in {key for _, key in records}:
        pods_of_key = tuple(chosen.get(key, ()))
        targets = tuple(containers.get(key, ()))
        selections[key] = Selection(
            matched=pods_of_key,
            pods=pods_of_key,
            containers=targets,
            selects_containers=bool(targets),
            explanation="recorded",
            reason=None if pods_of_key else "every recorded pod is gone",
        )
    return selections, missing
