"""The cluster objects selection reads -- pods, nodes, namespaces -- as plain frozen data.

They are parsed from Kubernetes objects as dicts (``kubectl get pods,nodes,namespaces -o yaml``,
a ``List``, a ``PodList``, or single objects), keeping only what selection and the planners
need. Parsing is tolerant of everything a real dump carries (managedFields, ownerReferences,
conditions, fields it does not know) and reports malformed objects by name and field path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import yaml

from faultmesh.api.base import Path, format_path
from faultmesh.api.common import INJECT_ANNOTATION

from .errors import InventoryError
from .index import PodIndex

#: What the API server fills in when a pod is created without them; applied to hand-written
#: inventories so field selectors behave as they would against a real cluster.
POD_DEFAULTS = {
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "serviceAccountName": "default",
}

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class Container:
    """One entry of ``spec.containers``."""

    name: str
    image: str = ""


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """One entry of ``status.containerStatuses``: where the runtime's container id lives."""

    name: str
    container_id: str | None = None
    ready: bool = False


@dataclass(frozen=True, slots=True)
class Pod:
    """What selection and planners read from a pod."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    node_name: str = ""
    phase: str = ""
    host_network: bool = False
    pod_ips: tuple[str, ...] = ()
    host_ip: str = ""
    containers: tuple[Container, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    restart_policy: str = POD_DEFAULTS["restartPolicy"]
    scheduler_name: str = POD_DEFAULTS["schedulerName"]
    service_account_name: str = POD_DEFAULTS["serviceAccountName"]
    nominated_node_name: str = ""
    #: Set while the pod is terminating; Chaos Mesh still selects such pods, and so do we.
    deletion_timestamp: str | None = None

    @property
    def key(self) -> str:
        """``namespace/name``: the id Chaos Mesh gives a pod target."""
        return f"{self.namespace}/{self.name}"

    @property
    def pod_ip(self) -> str:
        """The primary IP (the first of ``status.podIPs``), empty before one is assigned."""
        return self.pod_ips[0] if self.pod_ips else ""

    @property
    def terminating(self) -> bool:
        return self.deletion_timestamp is not None

    def container_id(self, container_name: str) -> str | None:
        """The runtime id (``containerd://…``) of the named container, None before it started."""
        for status in self.container_statuses:
            if status.name == container_name:
                return status.container_id
        return None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def inject_enabled(self) -> bool:
        """Whether the namespace opted in to chaos (the filter-namespace setting reads this)."""
        return self.annotations.get(INJECT_ANNOTATION) == "enabled"


@dataclass
class Inventory:
    """The pods, nodes and namespaces of a cluster, as selection sees them.

    ``nodes`` and ``namespaces`` are None when the source held none: selection then trusts
    node names it cannot check, and refuses what needs them (node labels, the namespace filter).
    """

    pods: tuple[Pod, ...] = ()
    nodes: tuple[Node, ...] | None = None
    namespaces: tuple[Namespace, ...] | None = None
    #: What was passed over while reading (objects of other kinds).
    notes: tuple[str, ...] = ()

    @cached_property
    def index(self) -> PodIndex:
        """The pods indexed for selection; built once, on first use."""
        return PodIndex(self.pods)

    @cached_property
    def namespace_table(self) -> dict[str, Namespace] | None:
        if self.namespaces is None:
            return None
        return {namespace.name: namespace for namespace in self.namespaces}

    @cached_property
    def node_table(self) -> dict[str, Node] | None:
        if self.nodes is None:
            return None
        return {node.name: node for node in self.nodes}


# ---------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    """Reads typed values out of one object's dict, recording problems instead of raising."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[str]):
        self.data = data
        self.where = where
        self.problems = problems

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(f"{self.where}: {format_path(path)}: {message}")

    def raw(self, path: Path, data: Any = None) -> Any:
        value: Any = self.data if data is None else data
        for part in path:
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and part < len(value) else None
            else:
                value = value.get(part) if isinstance(value, dict) else None
        return value

    def mapping(self, path: Path) -> Mapping[str, Any]:
        value = self.raw(path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind_of(value)}")
            return {}
        return value

    def items(self, path: Path) -> list[Any]:
        value = self.raw(path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"must be a list, got {_kind_of(value)}")
            return []
        return value

    def text(self, path: Path, default: str = "") -> str:
        value = self.raw(path)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        if _is_scalar(value):
            return _scalar_text(value)
        self.problem(path, f"must be a string, got {_kind_of(value)}")
        return default

    def optional_text(self, path: Path) -> str | None:
        value = self.raw(path)
        return None if value is None else self.text(path)

    def boolean(self, path: Path) -> bool:
        value = self.raw(path)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.problem(path, f"must be true or false, got {_kind_of(value)}")
        return False

    def string_map(self, path: Path) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, value in self.mapping(path).items():
            if _is_scalar(value) or value is None:
                result[str(key)] = "" if value is None else _scalar_text(value)
            else:
                self.problem((*path, str(key)), f"must be a string, got {_kind_of(value)}")
        return result


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _scalar_text(value: Any) -> str:
    # YAML turned an unquoted `true` or `1` into a bool or number; Kubernetes would hold its text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _identity(data: Mapping[str, Any], kind: str, where: str) -> str:
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        return f"{where} ({kind})"
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    if isinstance(name, str) and name:
        shown = f"{namespace}/{name}" if isinstance(namespace, str) and namespace and kind == "Pod" else name
        return f"{where} ({kind} {shown})"
    return f"{where} ({kind})"


def _name(reader: _Reader) -> str:
    name = reader.text(("metadata", "name"))
    if not name:
        reader.problem(("metadata", "name"), "is required")
    return name


def parse_pod(data: Any, where: str = "pod") -> Pod:
    """One Pod object (a dict) → :class:`Pod`; raise :class:`InventoryError` when malformed."""
    problems: list[str] = []
    pod = _parse_pod(data, where, problems)
    if problems or pod is None:
        raise InventoryError(problems or [f"{where}: expected a Pod object (a mapping)"])
    return pod


def parse_node(data: Any, where: str = "node") -> Node:
    problems: list[str] = []
    node = _parse_node(data, where, problems)
    if problems or node is None:
        raise InventoryError(problems or [f"{where}: expected a Node object (a mapping)"])
    return node


def parse_namespace(data: Any, where: str = "namespace") -> Namespace:
    problems: list[str] = []
    namespace = _parse_namespace(data, where, problems)
    if problems or namespace is None:
        raise InventoryError(problems or [f"{where}: expected a Namespace object (a mapping)"])
    return namespace


def _parse_pod(data: Any, where: str, problems: list[str]) -> Pod | None:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a Pod object (a mapping), got {_kind_of(data)}")
        return None
    reader = _Reader(data, _identity(data, "Pod", where), problems)
    for section in ("metadata", "spec", "status"):
        reader.mapping((section,))
    name = _name(reader)
    labels = reader.string_map(("metadata", "labels"))
    annotations = reader.string_map(("metadata", "annotations"))
    containers: list[Container] = []
    for position, item in enumerate(reader.items(("spec", "containers"))):
        path: Path = ("spec", "containers", position)
        if not isinstance(item, dict):
            reader.problem(path, f"must be a mapping, got {_kind_of(item)}")
            continue
        container_name = reader.text((*path, "name"))
        if not container_name:
            reader.problem((*path, "name"), "is required")
            continue
        containers.append(Container(container_name, reader.text((*path, "image"))))
    statuses: list[ContainerStatus] = []
    for position, item in enumerate(reader.items(("status", "containerStatuses"))):
        path = ("status", "containerStatuses", position)
        if not isinstance(item, dict):
            reader.problem(path, f"must be a mapping, got {_kind_of(item)}")
            continue
        statuses.append(
            ContainerStatus(
                name=reader.text((*path, "name")),
                container_id=reader.optional_text((*path, "containerID")) or None,
                ready=reader.boolean((*path, "ready")),
            )
        )
    pod_ips: list[str] = []
    for position, item in enumerate(reader.items(("status", "podIPs"))):
        path = ("status", "podIPs", position)
        if isinstance(item, dict):
            address = reader.text((*path, "ip"))
            if address:
                pod_ips.append(address)
        else:
            reader.problem(path, f"must be a mapping with an ip, got {_kind_of(item)}")
    if not pod_ips and reader.text(("status", "podIP")):
        # Dumps from clusters older than dual-stack carry only the singular field.
        pod_ips.append(reader.text(("status", "podIP")))
    return Pod(
        namespace=reader.text(("metadata", "namespace")) or DEFAULT_NAMESPACE,
        name=name,
        uid=reader.text(("metadata", "uid")),
        labels=labels,
        annotations=annotations,
        node_name=reader.text(("spec", "nodeName")),
        phase=reader.text(("status", "phase")),
        host_network=reader.boolean(("spec", "hostNetwork")),
        pod_ips=tuple(pod_ips),
        host_ip=reader.text(("status", "hostIP")),
        containers=tuple(containers),
        container_statuses=tuple(statuses),
        restart_policy=reader.text(("spec", "restartPolicy")) or POD_DEFAULTS["restartPolicy"],
        scheduler_name=reader.text(("spec", "schedulerName")) or POD_DEFAULTS["schedulerName"],
        service_account_name=(
            reader.text(("spec", "serviceAccountName"))
            or reader.text(("spec", "serviceAccount"))
            or POD_DEFAULTS["serviceAccountName"]
        ),
        nominated_node_name=reader.text(("status", "nominatedNodeName")),
        deletion_timestamp=reader.optional_text(("metadata", "deletionTimestamp")),
    )


def _parse_node(data: Any, where: str, problems: list[str]) -> Node | None:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a Node object (a mapping), got {_kind_of(data)}")
        return None
    reader = _Reader(data, _identity(data, "Node", where), problems)
    return Node(name=_name(reader), labels=reader.string_map(("metadata", "labels")))


def _parse_namespace(data: Any, where: str, problems: list[str]) -> Namespace | None:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a Namespace object (a mapping), got {_kind_of(data)}")
        return None
    reader = _Reader(data, _identity(data, "Namespace", where), problems)
    return Namespace(
        name=_name(reader),
        labels=reader.string_map(("metadata", "labels")),
        annotations=reader.string_map(("metadata", "annotations")),
    )


_TYPED_LISTS = {"PodList": "Pod", "NodeList": "Node", "NamespaceList": "Namespace"}


def inventory_from_objects(documents: Iterable[Any], source: str | None = None) -> Inventory:
    """Kubernetes objects (dicts; Lists are opened) → :class:`Inventory`.

    Pods, Nodes and Namespaces are kept; other kinds are passed over with a note. Raises
    :class:`InventoryError` listing every malformed object, named by document, item and name.
    """
    problems: list[str] = []
    notes: list[str] = []
    pods: list[Pod] = []
    nodes: list[Node] = []
    namespaces: list[Namespace] = []
    seen: dict[tuple[str, str], str] = {}
    head = f"{source}: " if source else ""

    def remember(kind: str, key: str, where: str) -> bool:
        first = seen.setdefault((kind, key), where)
        if first != where:
            problems.append(f"{where}: {kind} {key} appears twice (first at {first})")
            return False
        return True

    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        where = f"{head}doc {number}"
        for item_where, kind, item in _expand(document, where, problems):
            if kind == "Pod":
                pod = _parse_pod(item, item_where, problems)
                if pod is not None and remember(kind, pod.key, item_where):
                    pods.append(pod)
            elif kind == "Node":
                node = _parse_node(item, item_where, problems)
                if node is not None and remember(kind, node.name, item_where):
                    nodes.append(node)
            elif kind == "Namespace":
                namespace = _parse_namespace(item, item_where, problems)
                if namespace is not None and remember(kind, namespace.name, item_where):
                    namespaces.append(namespace)
            else:
                notes.append(
                    f"{_identity(item, kind, item_where)}: passed over, selection reads only Pods, Nodes and Namespaces"
                )
    if problems:
        raise InventoryError(problems)
    return Inventory(
        pods=tuple(pods),
        nodes=tuple(nodes) if nodes else None,
        namespaces=tuple(namespaces) if namespaces else None,
        notes=tuple(notes),
    )


def _expand(document: Any, where: str, problems: list[str]) -> Iterator[tuple[str, str, Any]]:
    """A document → (where, kind, object) for each object in it, Lists opened.

    A generator, so problems found here and while parsing the objects stay in document order.
    """
    if not isinstance(document, dict):
        problems.append(f"{where}: expected a Kubernetes object (a mapping), got {_kind_of(document)}")
        return
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        problems.append(f"{where}: kind is required")
        return
    if kind != "List" and kind not in _TYPED_LISTS:
        yield where, kind, document
        return
    items = document.get("items")
    if items is None:
        return
    if not isinstance(items, list):
        problems.append(f"{where}: items must be a list, got {_kind_of(items)}")
        return
    for position, item in enumerate(items):
        item_where = f"{where} items[{position}]"
        item_kind = item.get("kind") if isinstance(item, dict) else None
        # Items of a typed list (PodList) from the API carry no kind of their own.
        item_kind = item_kind or _TYPED_LISTS.get(kind)
        if not isinstance(item_kind, str) or not item_kind:
            if isinstance(item, dict):
                problems.append(f"{item_where}: kind is required")
            else:
                problems.append(f"{item_where}: expected a Kubernetes object (a mapping), got {_kind_of(item)}")
            continue
        yield item_where, item_kind, item


def load_inventory(text: str, source: str | None = None) -> Inventory:
    """YAML or JSON text (one or more documents) → :class:`Inventory`."""
    try:
        # libyaml's loader, where installed, reads a large dump many times faster.
        documents = list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source or 'inventory'}"
        if mark is not None:
            where += f":{mark.line + 1}"
        problem = getattr(error, "problem", None) or str(error)
        raise InventoryError([f"{where}: malformed YAML: {problem}"]) from None
    return inventory_from_objects(documents, source)
