"""Small constructors for selection tests: pods, inventories and selectors in one line each."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from faultmesh.api.common import ContainerSelector, PodSelector, PodSelectorSpec
from faultmesh.selection import Container, ContainerStatus, Inventory, Namespace, Node, Pod, load_inventory

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def cluster() -> Inventory:
    """The realistic dump in fixtures/cluster.yaml (parsed once; treat it as read-only)."""
    return load_inventory((FIXTURES / "cluster.yaml").read_text(), source="cluster.yaml")


def pod(name: str, namespace: str = "default", **fields: Any) -> Pod:
    containers = fields.pop("containers", ("main",))
    fields.setdefault("phase", "Running")
    return Pod(
        namespace=namespace,
        name=name,
        containers=tuple(Container(container) for container in containers),
        container_statuses=tuple(
            ContainerStatus(container, f"containerd://{namespace}-{name}-{container}") for container in containers
        ),
        **fields,
    )


def inventory(*pods: Pod, nodes: list[Node] | None = None, namespaces: list[Namespace] | None = None) -> Inventory:
    return Inventory(
        pods=pods,
        nodes=tuple(nodes) if nodes is not None else None,
        namespaces=tuple(namespaces) if namespaces is not None else None,
    )


def spec(**fields: Any) -> PodSelectorSpec:
    return PodSelectorSpec.model_validate(fields)


def selector(mode: str = "all", value: str | None = None, **fields: Any) -> PodSelector:
    return PodSelector.model_validate({"selector": fields, "mode": mode, "value": value})


def container_selector(
    mode: str = "all", value: str | None = None, container_names: list[str] | None = None, **fields: Any
) -> ContainerSelector:
    return ContainerSelector.model_validate(
        {"selector": fields, "mode": mode, "value": value, "containerNames": container_names}
    )


def keys(pods: Any) -> list[str]:
    return [item.key for item in pods]
