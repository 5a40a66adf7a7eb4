"""Pod field selectors: the fields Kubernetes lets a pod list be filtered by, and their values.

The table is Kubernetes' own (``ToSelectableFields`` for pods, plus the legacy ``spec.host``
alias); the API server refuses any other field, so selection refuses it too. Values are the
strings Kubernetes compares: ``spec.hostNetwork`` is ``"true"``/``"false"``, ``status.podIP`` is
the first pod IP. Chaos Mesh's in-memory matcher lacks ``spec.hostNetwork`` and so never
matches it; faultmesh follows Kubernetes here.
"""

from __future__ import annotations

from collections.abc import Callable

from faultmesh.api.base import quote

from .objects import Pod

POD_FIELDS: dict[str, Callable[[Pod], str]] = {
    "metadata.name": lambda pod: pod.name,
    "metadata.namespace": lambda pod: pod.namespace,
    "spec.nodeName": lambda pod: pod.node_name,
    "spec.restartPolicy": lambda pod: pod.restart_policy,
    "spec.schedulerName": lambda pod: pod.scheduler_name,
    "spec.serviceAccountName": lambda pod: pod.service_account_name,
    "spec.hostNetwork": lambda pod: "true" if pod.host_network else "false",
    "status.phase": lambda pod: pod.phase,
    "status.podIP": lambda pod: pod.pod_ip,
    "status.nominatedNodeName": lambda pod: pod.nominated_node_name,
}

#: Old names the API server still accepts, and the field each stands for.
FIELD_ALIASES = {"spec.host": "spec.nodeName"}


def pod_field(name: str) -> str:
    """The canonical name of a pod field selector key; raise ValueError naming the valid ones."""
    canonical = FIELD_ALIASES.get(name, name)
    if canonical not in POD_FIELDS:
        raise ValueError(
            f"{quote(name)} is not a field Kubernetes can select pods by; use one of {', '.join(POD_FIELDS)}"
        )
    return canonical


def field_value(pod: Pod, name: str) -> str:
    """The value of the (canonical) field ``name`` of ``pod``."""
    return POD_FIELDS[name](pod)
