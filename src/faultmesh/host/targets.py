"""What host mode can target on this machine, as an :class:`Inventory` the pure selection reads unchanged.

A containerd container becomes a pod in the namespace named after the containerd namespace: name = container
id, labels = container labels, one container (named by ``io.kubernetes.container.name`` or else the id) with
id ``containerd://ID``, Running while its task runs, else Pending. Inventory-file entries (see
:mod:`.inventory`) become pods whose one container is ``process://PID``. Every pod's node is this host.

The facts-to-pods functions are pure; listing containerd and resolving processes are the thin I/O layer.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from faultmesh.agent.runtime.base import ContainerRuntimeError
from faultmesh.agent.runtime.containerd import DEFAULT_SOCKET, ContainerdRuntime
from faultmesh.agent.runtime.process import process_state
from faultmesh.selection import Container, ContainerStatus, Inventory, Namespace, Node, Pod

from .inventory import HostInventoryError, InventoryEntry, read_inventory

CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
DEFAULT_CONTAINERD_NAMESPACE = "default"
EXIT_INVALID = 2


class HostTargetsError(Exception):
    """Host mode cannot list its targets (bad inventory, unreachable runtime); each problem is a sentence."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ContainerFacts:
    """What containerd says about one container."""

    id: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    running: bool = False


@dataclass(frozen=True)
class ProcessFacts:
    """An inventory entry and the PID it resolved to (None: no such process right now, see ``reason``)."""

    entry: InventoryEntry
    pid: int | None
    reason: str = ""


# ---- pure: facts to pods ------------------------------------------------------------------------------


def container_pod(facts: ContainerFacts, namespace: str, node_name: str) -> Pod:
    container_name = facts.labels.get(CONTAINER_NAME_LABEL) or facts.id
    return Pod(
        namespace=namespace,
        name=facts.id,
        labels=dict(facts.labels),
        node_name=node_name,
        phase="Running" if facts.running else "Pending",
        containers=(Container(name=container_name),),
        container_statuses=(
            ContainerStatus(name=container_name, container_id=f"containerd://{facts.id}", ready=facts.running),
        ),
    )


def process_pod(facts: ProcessFacts, node_name: str) -> Pod:
    entry = facts.entry
    container_id = f"process://{facts.pid}" if facts.pid is not None else None
    return Pod(
        namespace=entry.namespace,
        name=entry.name,
        labels=dict(entry.labels),
        node_name=node_name,
        phase="Running" if facts.pid is not None else "Pending",
        containers=(Container(name=entry.name),),
        container_statuses=(
            ContainerStatus(name=entry.name, container_id=container_id, ready=facts.pid is not None),
        ),
    )


def inventory_from_facts(
    containers: Iterable[ContainerFacts],
    processes: Iterable[ProcessFacts],
    containerd_namespace: str,
    node_name: str,
    notes: Sequence[str] = (),
) -> Inventory:
    """One inventory of every local target; namespaces and the one node are listed so every selector works."""
    pods = [container_pod(facts, containerd_namespace, node_name) for facts in containers]
    all_notes = list(notes)
    for facts in processes:
        pods.append(process_pod(facts, node_name))
        if facts.pid is None:
            all_notes.append(f"{facts.entry.key}: {facts.reason}")
    keys = [pod.key for pod in pods]
    clashes = sorted({key for key in keys if keys.count(key) > 1})
    if clashes:
        raise HostTargetsError(
            [f"{key}: named by both containerd and the inventory file; rename the inventory entry" for key in clashes]
        )
    namespaces = sorted({pod.namespace for pod in pods})
    return Inventory(
        pods=tuple(pods),
        nodes=(Node(name=node_name),),
        namespaces=tuple(Namespace(name=name) for name in namespaces),
        notes=tuple(all_notes),
    )


# ---- I/O: containerd and /proc ------------------------------------------------------------------------


def list_containerd(socket: Path, namespace: str) -> list[ContainerFacts]:
    """Every container in the containerd namespace, with labels and whether its task runs."""
    runtime = ContainerdRuntime(socket=socket, namespace=namespace)
    try:
        facts = []
        for container_id in runtime.list_ids():
            bare = runtime.bare_id(container_id)
            try:
                running = runtime.task(bare).status == "RUNNING"
            except ContainerRuntimeError:
                running = False  # a container without a task (created, never started) is Pending
            facts.append(ContainerFacts(id=bare, labels=runtime.labels(bare), running=running))
        return facts
    finally:
        runtime.close()


def _alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def _netns_holder(name: str) -> int | str:
    """The live process with the lowest PID whose network namespace is /run/netns/NAME, or why there is none."""
    try:
        wanted = os.stat(Path("/run/netns") / name)
    except FileNotFoundError:
        return f"no network namespace {name!r} (/run/netns/{name} does not exist)"
    pids = sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    for pid in pids:
        try:
            found = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (found.st_ino, found.st_dev) == (wanted.st_ino, wanted.st_dev) and _alive(pid):
            return pid
    return f"no process lives in netns {name!r}; start one, e.g. `ip netns exec {name} sleep infinity &`"


def _pgrep(pattern: str) -> int | str:
    try:
        result = subprocess.run(
            ["pgrep", "-o", "-f", "--", pattern], check=False, capture_output=True, text=True, timeout=10
        )
    except FileNotFoundError:
        raise HostTargetsError(["pgrep is not installed: install procps to use command: entries"]) from None
    if result.returncode == 1:
        return f"no process matches command pattern {pattern!r}"
    if result.returncode != 0:
        raise HostTargetsError([f"command: {pattern!r} is not a valid pgrep pattern: {result.stderr.strip()}"])
    return int(result.stdout.split()[0])


def resolve_process(entry: InventoryEntry) -> ProcessFacts:
    if entry.kind == "pid":
        pid = int(entry.value)
        if _alive(pid):
            return ProcessFacts(entry, pid)
        return ProcessFacts(entry, None, f"process {pid} does not exist")
    found = _pgrep(entry.value) if entry.kind == "command" else _netns_holder(entry.value)
    if isinstance(found, int):
        return ProcessFacts(entry, found)
    return ProcessFacts(entry, None, found)


def build_inventory(
    inventory_file: Path | None = None,
    containerd_socket: Path | None = None,
    containerd_namespace: str = DEFAULT_CONTAINERD_NAMESPACE,
    node_name: str | None = None,
) -> Inventory:
    """Everything host mode can target: containerd's containers and the inventory file's processes.

    ``containerd_socket`` None means the default socket, which may be absent (then no containers, with a
    note); a socket given explicitly must answer. Raises :class:`HostTargetsError` for bad input.
    """
    node = node_name or os.uname().nodename
    notes: list[str] = []
    entries: list[InventoryEntry] = []
    if inventory_file is not None:
        try:
            entries = read_inventory(inventory_file)
        except HostInventoryError as error:
            raise HostTargetsError(error.problems) from None
    socket = containerd_socket or DEFAULT_SOCKET
    containers: list[ContainerFacts] = []
    if containerd_socket is None and not socket.exists():
        notes.append(f"no containerd socket at {socket}: no containers listed (use --containerd-socket)")
    else:
        if not socket.exists():
            raise HostTargetsError([f"--containerd-socket: {socket} does not exist"])
        try:
            containers = list_containerd(socket, containerd_namespace)
        except ContainerRuntimeError as error:
            raise HostTargetsError([f"--containerd-socket: {error}"]) from None
    processes = [resolve_process(entry) for entry in entries]
    return inventory_from_facts(containers, processes, containerd_namespace, node, notes)


# ---- the command ----------------------------------------------------------------------------------------


class TargetsFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def pod_summary(pod: Pod) -> dict[str, Any]:
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "labels": dict(pod.labels),
        "phase": pod.phase,
        "containers": [
            {"name": status.name, "containerID": status.container_id} for status in pod.container_statuses
        ],
    }


def targets_command(
    inventory: Annotated[
        Path | None,
        typer.Option("--inventory", help="YAML file naming processes and network namespaces (docs/host-mode.md)."),
    ] = None,
    containerd_socket: Annotated[
        Path | None,
        typer.Option("--containerd-socket", help=f"containerd's socket (default {DEFAULT_SOCKET}, when it exists)."),
    ] = None,
    containerd_namespace: Annotated[
        str, typer.Option("--containerd-namespace", help="containerd namespace to list; it plays the pods' namespace.")
    ] = DEFAULT_CONTAINERD_NAMESPACE,
    output: Annotated[TargetsFormat, typer.Option("--output", "-o", help="table or json.")] = TargetsFormat.TABLE,
) -> None:
    """List what host mode can target here: containers, processes and network namespaces, with labels."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        found = build_inventory(inventory, containerd_socket, containerd_namespace)
    except HostTargetsError as error:
        for problem in error.problems:
            err.print(f"[red]✗[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    for note in found.notes:
        err.print(f"[dim]{escape(note)}[/dim]", highlight=False)
    if output == TargetsFormat.JSON:
        out.print_json(json.dumps([pod_summary(pod) for pod in found.pods]))
        return
    table = Table("NAMESPACE/NAME", "LABELS", "CONTAINER", "CONTAINER ID", "PHASE")
    for pod in found.pods:
        labels = ",".join(f"{key}={value}" for key, value in sorted(pod.labels.items()))
        for status in pod.container_statuses:
            table.add_row(escape(pod.key), escape(labels), escape(status.name),
                          escape(status.container_id or "-"), pod.phase)
    out.print(table)
    if not found.pods:
        err.print("no targets found", highlight=False)
