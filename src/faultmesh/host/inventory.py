"""The host inventory file: plain processes and named network namespaces that host mode may target.

Containers are found in containerd; everything else is named here, so selectors have labels to match.
Format (YAML)::

    targets:
      - namespace: demo          # plays the Kubernetes namespace (default: "default")
        name: web                # plays the pod name; unique within its namespace
        labels: {app: web}       # plays the pod labels (Kubernetes label syntax)
        pid: 1234                # exactly one of pid, command, netns:
      - name: worker
        command: "sleep 3600"    # a pgrep -f pattern; the oldest matching process is the target
      - name: backend
        netns: fm-backend        # a named netns (/run/netns/NAME); the target is a process living in it

Each entry becomes a pod with one container (named after the entry) whose id is ``process://PID``.
A ``netns`` entry is resolved to the live process with the lowest PID in that network namespace; host mode does
not start a holder itself, so a netns nobody lives in shows as Pending until one does
(``ip netns exec NAME sleep infinity &``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from faultmesh.selection.labels import label_key_problem, label_value_problem

DEFAULT_NAMESPACE = "default"
SOURCE_KEYS = ("pid", "command", "netns")
ENTRY_KEYS = ("namespace", "name", "labels", *SOURCE_KEYS)

SourceKind = Literal["pid", "command", "netns"]


class HostInventoryError(Exception):
    """The inventory file is missing or malformed; ``problems`` name the file and the field path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class InventoryEntry:
    """One target of the inventory file: where it is named, and how its process is found."""

    namespace: str
    name: str
    kind: SourceKind
    #: The PID (for ``pid``), the pgrep pattern (``command``) or the netns name (``netns``).
    value: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _entry(item: Any, where: str, problems: list[str]) -> InventoryEntry | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: must be a mapping with name, labels and one of pid, command, netns")
        return None
    start = len(problems)
    for key in item:
        if key not in ENTRY_KEYS:
            problems.append(f"{where}.{key}: unknown field (expected one of {', '.join(ENTRY_KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.name: required, a non-empty string")
    namespace = item.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not namespace:
        problems.append(f"{where}.namespace: must be a non-empty string")
    labels = item.get("labels") or {}
    if not isinstance(labels, dict):
        problems.append(f"{where}.labels: must be a mapping of label keys to values")
        labels = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(f"{where}.labels.{key}: keys and values must be strings (quote {value!r})")
            continue
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            problems.append(f"{where}.labels.{key}: {problem}")
    sources = [key for key in SOURCE_KEYS if key in item]
    if len(sources) != 1:
        found = ", ".join(sources) if sources else "none"
        problems.append(f"{where}: needs exactly one of pid, command, netns (found {found})")
        return None
    kind: SourceKind = sources[0]  # type: ignore[assignment]
    value = item[kind]
    if kind == "pid":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(f"{where}.pid: {value!r} is not a positive process id")
    elif not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{kind}: must be a non-empty string")
    elif kind == "netns" and ("/" in value or value in (".", "..")):
        problems.append(f"{where}.netns: {value!r} is not a netns name (a file name under /run/netns)")
    if len(problems) > start or not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return InventoryEntry(namespace=namespace, name=name, kind=kind, value=str(value), labels=dict(labels))


def parse_inventory(text: str, source: str = "inventory") -> list[InventoryEntry]:
    """The entries of an inventory file's text; every problem is reported, each with its field path."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise HostInventoryError([f"{source}: not valid YAML: {error}"]) from None
    if document is None:
        return []
    if not isinstance(document, dict) or set(document) - {"targets"}:
        raise HostInventoryError([f"{source}: must be a mapping with one key, targets (a list)"])
    items = document.get("targets") or []
    if not isinstance(items, list):
        raise HostInventoryError([f"{source}: targets: must be a list"])
    problems: list[str] = []
    entries: list[InventoryEntry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        entry = _entry(item, f"targets[{index}]", problems)
        if entry is None:
            continue
        if entry.key in seen:
            problems.append(f"targets[{index}].name: {entry.key} is already named by targets[{seen[entry.key]}]")
            continue
        seen[entry.key] = index
        entries.append(entry)
    if problems:
        raise HostInventoryError([f"{source}: {problem}" for problem in problems])
    return entries


def read_inventory(path: Path) -> list[InventoryEntry]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HostInventoryError([f"{path}: no such inventory file"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise HostInventoryError([f"{path}: cannot be read: {error}"]) from None
    return parse_inventory(text, source=str(path))
