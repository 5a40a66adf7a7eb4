"""Host mode: Chaos Mesh manifests against this machine's containers, processes and network namespaces."""

from __future__ import annotations

from .inventory import HostInventoryError, InventoryEntry, parse_inventory, read_inventory
from .targets import (
    ContainerFacts,
    HostTargetsError,
    ProcessFacts,
    build_inventory,
    container_pod,
    inventory_from_facts,
    process_pod,
    targets_command,
)

__all__ = [
    "ContainerFacts",
    "HostInventoryError",
    "HostTargetsError",
    "InventoryEntry",
    "ProcessFacts",
    "build_inventory",
    "container_pod",
    "inventory_from_facts",
    "parse_inventory",
    "process_pod",
    "read_inventory",
    "targets_command",
]
