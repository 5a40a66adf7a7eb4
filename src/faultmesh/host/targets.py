"""What host mode can target on this machine, as an :class:`Inventory` the pure selection reads unchanged.

Every local target becomes a pod with one container, on the one node that is this host:

- a containerd container: namespace = the containerd namespace, name = container id, id ``containerd://ID``;
- a docker container: namespace = its ``io.kubernetes.pod.namespace`` label or ``docker``, name = its docker
  name, id ``docker://ID``;
- a CRI-O container (listed with ``crictl``): namespace = that label or ``cri-o``, name = its id, id
  ``cri-o://ID``;
- an inventory-file entry (see :mod:`.inventory`): its own namespace and name, id ``process://PID``.

Containers keep their labels; the container is named by ``io.kubernetes.container.name`` when present.
A pod is Running while its process runs, else Pending. Its ``pod_ips`` are the addresses of its network
namespace (IPv4 first, then IPv6; loopback and link-local IPv6 left out), and ``host_network`` says
whether that namespace is the host's own.

The facts-to-pods functions are pure; the I/O layer (runtimes, ``/proc``, ``ip`` run through ``nsenter``
so this process never changes namespace) gathers the facts.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from faultmesh.agent.runtime import WELL_KNOWN_SOCKETS
from faultmesh.agent.runtime.base import ContainerNotFoundError, ContainerNotRunningError, ContainerRuntimeError
from faultmesh.agent.runtime.containerd import DEFAULT_SOCKET, ContainerdRuntime
from faultmesh.agent.runtime.crio import CrioRuntime
from faultmesh.agent.runtime.docker import DockerRuntime
from faultmesh.agent.runtime.process import process_state
from faultmesh.selection import Container, ContainerStatus, Inventory, Namespace, Node, Pod

from .inventory import HostInventoryError, InventoryEntry, read_inventory

CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
DEFAULT_CONTAINERD_NAMESPACE = "default"
#: The pod namespace of a docker / CRI-O container that carries no Kubernetes namespace label.
DOCKER_NAMESPACE = "docker"
CRIO_NAMESPACE = "cri-o"
DOCKER_SOCKETS = (Path("/run/docker.sock"), *WELL_KNOWN_SOCKETS["docker"])
CRIO_SOCKETS = (Path("/run/crio/crio.sock"), *WELL_KNOWN_SOCKETS["cri-o"])
EXIT_INVALID = 2
#: Seconds one helper command (``ip``, ``nsenter``, ``crictl``, ``pgrep``) may take.
COMMAND_TIMEOUT = 10.0

ContainerRuntimeName = Literal["containerd", "docker", "cri-o"]
INVENTORY_SOURCE = "the inventory file"


class HostTargetsError(Exception):
    """Host mode cannot list its targets (bad inventory, unreachable runtime); each problem is a sentence."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class NetworkFacts:
    """What a target's network namespace holds: its pod IPs, and whether it is the host's own namespace."""

    pod_ips: tuple[str, ...] = ()
    host_network: bool = False


NO_NETWORK = NetworkFacts()


@dataclass(frozen=True)
class ContainerFacts:
    """What a container runtime says about one container, and what its network namespace holds."""

    id: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    running: bool = False
    runtime: ContainerRuntimeName = "containerd"
    #: The pod namespace it plays (for containerd: the containerd namespace).
    namespace: str = DEFAULT_CONTAINERD_NAMESPACE
    #: The runtime's name for it (docker's container name); empty: the id names the pod.
    name: str = ""
    #: Its main process while it runs: where its network namespace is read.
    pid: int | None = None
    network: NetworkFacts = NO_NETWORK

    @property
    def pod_name(self) -> str:
        return self.name or self.id

    @property
    def container_name(self) -> str:
        return self.labels.get(CONTAINER_NAME_LABEL) or self.pod_name

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"


@dataclass(frozen=True)
class ProcessFacts:
    """An inventory entry and the PID it resolved to (None: no such process right now, see ``reason``)."""

    entry: InventoryEntry
    pid: int | None
    reason: str = ""
    network: NetworkFacts = NO_NETWORK


# ---- pure: facts to pods ------------------------------------------------------------------------------


def container_pod(facts: ContainerFacts, node_name: str, *, host_ip: str = "") -> Pod:
    name = facts.container_name
    return Pod(
        namespace=facts.namespace,
        name=facts.pod_name,
        labels=dict(facts.labels),
        node_name=node_name,
        phase="Running" if facts.running else "Pending",
        host_network=facts.network.host_network,
        pod_ips=facts.network.pod_ips,
        host_ip=host_ip,
        containers=(Container(name=name),),
        container_statuses=(
            ContainerStatus(name=name, container_id=f"{facts.runtime}://{facts.id}", ready=facts.running),
        ),
    )


def process_pod(facts: ProcessFacts, node_name: str, *, host_ip: str = "") -> Pod:
    entry = facts.entry
    container_id = f"process://{facts.pid}" if facts.pid is not None else None
    return Pod(
        namespace=entry.namespace,
        name=entry.name,
        labels=dict(entry.labels),
        node_name=node_name,
        phase="Running" if facts.pid is not None else "Pending",
        host_network=facts.network.host_network,
        pod_ips=facts.network.pod_ips,
        host_ip=host_ip,
        containers=(Container(name=entry.name),),
        container_statuses=(
            ContainerStatus(name=entry.name, container_id=container_id, ready=facts.pid is not None),
        ),
    )


def _clash_problem(key: str, sources: list[str]) -> str:
    first, second = sources[0], next(source for source in sources[1:] if source != sources[0])
    if INVENTORY_SOURCE in (first, second):
        runtime = second if first == INVENTORY_SOURCE else first
        return f"{key}: named by both {runtime} and {INVENTORY_SOURCE}; rename the inventory entry"
    return f"{key}: named by both {first} and {second}; rename one of the containers"


def inventory_from_facts(
    containers: Iterable[ContainerFacts],
    processes: Iterable[ProcessFacts],
    node_name: str,
    *,
    notes: Sequence[str] = (),
    host_ip: str = "",
) -> Inventory:
    """One inventory of every local target; namespaces and the one node are listed so every selector works."""
    pods: list[Pod] = []
    sources: dict[str, list[str]] = {}
    for facts in containers:
        pods.append(container_pod(facts, node_name, host_ip=host_ip))
        sources.setdefault(facts.key, []).append(facts.runtime)
    all_notes = list(notes)
    for process in processes:
        pods.append(process_pod(process, node_name, host_ip=host_ip))
        sources.setdefault(process.entry.key, []).append(INVENTORY_SOURCE)
        if process.pid is None:
            all_notes.append(f"{process.entry.key}: {process.reason}")
    clashes = sorted(key for key, named_by in sources.items() if len(named_by) > 1)
    if clashes:
        raise HostTargetsError([_clash_problem(key, sources[key]) for key in clashes])
    namespaces = sorted({pod.namespace for pod in pods})
    return Inventory(
        pods=tuple(pods),
        nodes=(Node(name=node_name),),
        namespaces=tuple(Namespace(name=name) for name in namespaces),
        notes=tuple(all_notes),
    )


def pod_ips_from_links(links: Any) -> tuple[str, ...]:
    """The pod IPs in ``ip -j addr show`` output: IPv4 first, then IPv6, each in the order ``ip`` lists them.

    Loopback (``lo``) and link-local IPv6 are left out; every other IPv4 address counts, 169.254.x.x
    included (a link-local IPv4 address is routable enough between namespaces on one host).
    """
    ipv4: list[str] = []
    ipv6: list[str] = []
    for link in links if isinstance(links, list) else ():
        if not isinstance(link, dict) or link.get("ifname") == "lo":
            continue
        for info in link.get("addr_info") or ():
            if not isinstance(info, dict) or info.get("dadfailed") or not isinstance(info.get("local"), str):
                continue
            try:
                address = ipaddress.ip_address(info["local"])
            except ValueError:
                continue
            if address.version == 4:
                ipv4.append(str(address))
            elif not (address.is_link_local or address.is_loopback):
                ipv6.append(str(address))
    return tuple(dict.fromkeys([*ipv4, *ipv6]))


def primary_address(links: Any, default_routes: Any) -> str:
    """The host's main address: the first IPv4 on the default route's device, else its first pod IP."""
    links = [link for link in links if isinstance(link, dict)] if isinstance(links, list) else []
    routes = [route for route in default_routes if isinstance(route, dict)] if isinstance(default_routes, list) else []
    for route in routes:
        on_device = pod_ips_from_links([link for link in links if link.get("ifname") == route.get("dev")])
        if on_device:
            return on_device[0]
    addresses = pod_ips_from_links(links)
    return addresses[0] if addresses else ""


def _docker_name(names: Any, container_id: str) -> str:
    # A linked container also lists "/other/alias"; its own name is the one with a single leading slash.
    for name in names if isinstance(names, list) else ():
        if isinstance(name, str) and name.startswith("/") and "/" not in name[1:]:
            return name[1:]
    return container_id


def _string_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, dict):
        return {}
    return {str(key): str(value) for key, value in labels.items()}


def docker_container_facts(items: Any) -> list[ContainerFacts]:
    """Docker's ``GET /containers/json?all=1`` answer as facts (PIDs and networks are filled in later)."""
    facts = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("Id"), str) or not item["Id"]:
            continue
        labels = _string_labels(item.get("Labels"))
        facts.append(ContainerFacts(
            id=item["Id"],
            labels=labels,
            running=item.get("State") == "running",
            runtime="docker",
            namespace=labels.get(POD_NAMESPACE_LABEL) or DOCKER_NAMESPACE,
            name=_docker_name(item.get("Names"), item["Id"]),
        ))
    return facts


def crictl_container_facts(document: Any) -> list[ContainerFacts]:
    """``crictl ps -a -o json`` output as facts; a CRI container is named by its id, like containerd's."""
    items = document.get("containers") if isinstance(document, dict) else None
    facts = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            continue
        labels = _string_labels(item.get("labels"))
        metadata = item.get("metadata")
        if CONTAINER_NAME_LABEL not in labels and isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            labels[CONTAINER_NAME_LABEL] = metadata["name"]  # the CRI name is the Kubernetes container name
        facts.append(ContainerFacts(
            id=item["id"],
            labels=labels,
            running=item.get("state") == "CONTAINER_RUNNING",
            runtime="cri-o",
            namespace=labels.get(POD_NAMESPACE_LABEL) or CRIO_NAMESPACE,
        ))
    return facts


# ---- I/O: runtimes ----------------------------------------------------------------------------------------


def list_containerd(socket: Path, namespace: str) -> list[ContainerFacts]:
    """Every container in the containerd namespace, with labels, whether its task runs, and its PID."""
    runtime = ContainerdRuntime(socket=socket, namespace=namespace)
    try:
        facts = []
        for container_id in runtime.list_ids():
            bare = runtime.bare_id(container_id)
            try:
                task = runtime.task(bare)
            except (ContainerNotFoundError, ContainerNotRunningError):
                task = None  # a container without a task (created, never started) is Pending
            running = task is not None and task.status == "RUNNING"
            facts.append(ContainerFacts(
                id=bare, labels=runtime.labels(bare), running=running, runtime="containerd", namespace=namespace,
                pid=task.pid if running and task is not None and task.pid > 0 else None,
            ))
        return facts
    finally:
        runtime.close()


def _with_pid(container: ContainerFacts, pid_of: Callable[[str], int]) -> ContainerFacts:
    """A running container's facts with its PID; one that stopped since it was listed becomes Pending."""
    if not container.running:
        return container
    try:
        return replace(container, pid=pid_of(container.id))
    except (ContainerNotFoundError, ContainerNotRunningError):
        return replace(container, running=False)


def list_docker(socket: Path) -> list[ContainerFacts]:
    """Every docker container (stopped ones too), with the PID of each running one."""
    runtime = DockerRuntime(socket=socket)
    return [_with_pid(container, runtime.pid_of) for container in docker_container_facts(runtime.list_containers())]


def list_crio(socket: Path) -> list[ContainerFacts]:
    """Every CRI-O container through ``crictl`` (CRI-O's own HTTP endpoint cannot list), with PIDs."""
    crictl = shutil.which("crictl")
    if crictl is None:
        raise ContainerRuntimeError(
            "listing CRI-O's containers needs crictl: install it (Debian/Ubuntu package cri-tools, or the crictl "
            "release of kubernetes-sigs/cri-tools)"
        )
    argv = [crictl, "--runtime-endpoint", f"unix://{socket}", "ps", "--all", "--output", "json"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ContainerRuntimeError(f"crictl did not answer within {COMMAND_TIMEOUT:g} s") from None
    if result.returncode != 0:
        raise ContainerRuntimeError(f"crictl ps failed: {result.stderr.strip() or f'exit code {result.returncode}'}")
    try:
        document = json.loads(result.stdout)
    except ValueError:
        raise ContainerRuntimeError(f"crictl ps printed no JSON: {result.stdout[:200]!r}") from None
    runtime = CrioRuntime(socket=socket)
    return [_with_pid(container, runtime.pid_of) for container in crictl_container_facts(document)]


def _from_runtime(
    option: str,
    given: Path | None,
    defaults: Sequence[Path],
    lister: Callable[[Path], list[ContainerFacts]],
    notes: list[str],
) -> list[ContainerFacts]:
    """One runtime's containers. A socket named on the command line must answer; a default one may be absent
    or silent (a note says so), since host mode lists whatever runtimes this machine happens to have."""
    if given is not None:
        if not given.exists():
            raise HostTargetsError([f"{option}: {given} does not exist"])
        try:
            return lister(given)
        except ContainerRuntimeError as error:
            raise HostTargetsError([f"{option}: {error}"]) from None
    socket = next((path for path in defaults if path.exists()), None)
    if socket is None:
        return []
    try:
        return lister(socket)
    except ContainerRuntimeError as error:
        notes.append(f"{socket}: its containers are not listed: {error} (name a socket with {option})")
        return []


# ---- I/O: processes --------------------------------------------------------------------------------------


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
            ["pgrep", "-o", "-f", "--", pattern], check=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
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


# ---- I/O: network namespaces --------------------------------------------------------------------------------


class NetnsReadError(Exception):
    """A network namespace's addresses could not be read; the message says why."""


NetnsId = tuple[int, int]


def _netns_id(path: str) -> NetnsId:
    try:
        found = os.stat(path)
    except OSError as error:
        raise NetnsReadError(f"{path}: {error.strerror}") from None
    return found.st_dev, found.st_ino


def _host_netns_path() -> str | None:
    """A path to the host's network namespace: PID 1's, or when that is closed to us, kthreadd's (kernel
    threads live in the initial namespaces). None when neither can be read."""
    candidates = ["/proc/1/ns/net"]
    try:
        if Path("/proc/2/comm").read_text().strip() == "kthreadd":
            candidates.append("/proc/2/ns/net")
    except OSError:
        pass
    for path in candidates:
        try:
            os.stat(path)
        except OSError:
            continue
        return path
    return None


def _ip_json(netns_path: str | None, *args: str) -> Any:
    """``ip -j ARGS`` in the namespace at ``netns_path`` (None: this process's own), as parsed JSON."""
    argv = ["ip", "-j", *args]
    if netns_path is not None:
        argv = ["nsenter", f"--net={netns_path}", *argv]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except FileNotFoundError:
        raise NetnsReadError(f"{argv[0]} is not installed (package {'util-linux' if netns_path else 'iproute2'})"
                             ) from None
    except subprocess.TimeoutExpired:
        raise NetnsReadError(f"{' '.join(argv)} did not finish within {COMMAND_TIMEOUT:g} s") from None
    if result.returncode != 0:
        raise NetnsReadError(result.stderr.strip() or f"{' '.join(argv)} exited {result.returncode}")
    try:
        return json.loads(result.stdout or "[]")
    except ValueError:
        raise NetnsReadError(f"{' '.join(argv)} printed no JSON") from None


class NetnsReader:
    """Reads network namespaces' addresses with ``ip``, once per namespace, without joining any itself."""

    def __init__(self) -> None:
        self.host_path = _host_netns_path()
        self._host_id = self._id_or_none(self.host_path)
        self._own_id = self._id_or_none("/proc/self/ns/net")
        self._links: dict[NetnsId, Any] = {}

    @staticmethod
    def _id_or_none(path: str | None) -> NetnsId | None:
        try:
            return _netns_id(path) if path is not None else None
        except NetnsReadError:
            return None

    @property
    def knows_host(self) -> bool:
        return self._host_id is not None

    def _links_of(self, path: str, netns: NetnsId) -> Any:
        if netns not in self._links:
            # Our own namespace needs no nsenter (nor the privileges nsenter needs).
            self._links[netns] = _ip_json(None if netns == self._own_id else path, "addr", "show")
        return self._links[netns]

    def network(self, path: str) -> NetworkFacts:
        """The facts of the namespace at ``path`` (``/proc/PID/ns/net`` or ``/run/netns/NAME``)."""
        netns = _netns_id(path)
        return NetworkFacts(pod_ips_from_links(self._links_of(path, netns)), host_network=netns == self._host_id)

    def host_ip(self) -> str:
        """The host's primary address, or "" when the host's namespace cannot be read."""
        if self.host_path is None or self._host_id is None:
            return ""
        try:
            links = self._links_of(self.host_path, self._host_id)
            own = self._host_id == self._own_id
            routes = _ip_json(None if own else self.host_path, "route", "show", "default")
        except NetnsReadError:
            return ""
        return primary_address(links, routes)


def _with_network(reader: NetnsReader, key: str, path: str | None, notes: list[str]) -> NetworkFacts:
    if path is None:
        return NO_NETWORK
    try:
        return reader.network(path)
    except NetnsReadError as error:
        notes.append(f"{key}: pod IPs not read: {error}")
        return NO_NETWORK


def _process_netns_path(facts: ProcessFacts) -> str | None:
    if facts.entry.kind == "netns":
        path = Path("/run/netns") / facts.entry.value
        return str(path) if path.exists() else None  # resolving it already said the netns is missing
    return f"/proc/{facts.pid}/ns/net" if facts.pid is not None else None


# ---- everything together -----------------------------------------------------------------------------------


def build_inventory(
    inventory_file: Path | None = None,
    containerd_socket: Path | None = None,
    containerd_namespace: str = DEFAULT_CONTAINERD_NAMESPACE,
    node_name: str | None = None,
    *,
    docker_socket: Path | None = None,
    crio_socket: Path | None = None,
) -> Inventory:
    """Everything host mode can target: the runtimes' containers and the inventory file's processes.

    A socket given explicitly must exist and answer; a runtime's default socket is used when it exists
    (a missing containerd socket gets a note, missing docker and CRI-O ones do not: they are extras).
    Raises :class:`HostTargetsError` for bad input.
    """
    node = node_name or os.uname().nodename
    notes: list[str] = []
    entries: list[InventoryEntry] = []
    if inventory_file is not None:
        try:
            entries = read_inventory(inventory_file)
        except HostInventoryError as error:
            raise HostTargetsError(error.problems) from None
    if containerd_socket is None and not DEFAULT_SOCKET.exists():
        notes.append(f"no containerd socket at {DEFAULT_SOCKET}: no containers listed (use --containerd-socket)")
    containers = _from_runtime("--containerd-socket", containerd_socket, (DEFAULT_SOCKET,),
                               lambda socket: list_containerd(socket, containerd_namespace), notes)
    containers += _from_runtime("--docker-socket", docker_socket, DOCKER_SOCKETS, list_docker, notes)
    containers += _from_runtime("--crio-socket", crio_socket, CRIO_SOCKETS, list_crio, notes)
    processes = [resolve_process(entry) for entry in entries]

    reader = NetnsReader()
    if not reader.knows_host:
        notes.append("the host's network namespace cannot be read (/proc/1/ns/net): no target is marked hostNetwork")
    containers = [
        replace(facts, network=_with_network(
            reader, facts.key, f"/proc/{facts.pid}/ns/net" if facts.pid is not None else None, notes))
        for facts in containers
    ]
    processes = [
        replace(facts, network=_with_network(reader, facts.entry.key, _process_netns_path(facts), notes))
        for facts in processes
    ]
    host_ip = reader.host_ip() if containers or processes else ""
    return inventory_from_facts(containers, processes, node, notes=notes, host_ip=host_ip)


# ---- the command ----------------------------------------------------------------------------------------


class TargetsFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def pod_runtime(pod: Pod) -> str:
    """The runtime behind a local pod: its container id's scheme; a pod without one is an unresolved process."""
    for status in pod.container_statuses:
        if status.container_id and "://" in status.container_id:
            return status.container_id.split("://", 1)[0]
    return "process"


def pod_summary(pod: Pod) -> dict[str, Any]:
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "labels": dict(pod.labels),
        "phase": pod.phase,
        "runtime": pod_runtime(pod),
        "podIPs": list(pod.pod_ips),
        "hostNetwork": pod.host_network,
        "hostIP": pod.host_ip,
        "containers": [
            {"name": status.name, "containerID": status.container_id} for status in pod.container_statuses
        ],
    }


def _ips_cell(pod: Pod) -> str:
    ips = ",".join(pod.pod_ips) or "-"
    return f"{ips} (host network)" if pod.host_network else ips


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
    docker_socket: Annotated[
        Path | None,
        typer.Option("--docker-socket", help=f"docker's socket (default {DOCKER_SOCKETS[0]}, when it exists)."),
    ] = None,
    crio_socket: Annotated[
        Path | None,
        typer.Option("--crio-socket", help=f"CRI-O's socket, listed with crictl (default {CRIO_SOCKETS[0]})."),
    ] = None,
    output: Annotated[TargetsFormat, typer.Option("--output", "-o", help="table or json.")] = TargetsFormat.TABLE,
) -> None:
    """List what host mode can target here: containers, processes and network namespaces, with labels and IPs."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        found = build_inventory(inventory, containerd_socket, containerd_namespace,
                                docker_socket=docker_socket, crio_socket=crio_socket)
    except HostTargetsError as error:
        for problem in error.problems:
            err.print(f"[red]✗[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    for note in found.notes:
        err.print(f"[dim]{escape(note)}[/dim]", highlight=False)
    if output == TargetsFormat.JSON:
        out.print_json(json.dumps([pod_summary(pod) for pod in found.pods]))
        return
    table = Table("NAMESPACE/NAME", "LABELS", "CONTAINER", "CONTAINER ID", "RUNTIME", "IPS", "PHASE")
    for pod in found.pods:
        labels = ",".join(f"{key}={value}" for key, value in sorted(pod.labels.items()))
        for status in pod.container_statuses:
            table.add_row(escape(pod.key), escape(labels), escape(status.name), escape(status.container_id or "-"),
                          pod_runtime(pod), escape(_ips_cell(pod)), pod.phase)
    out.print(table)
    if not found.pods:
        err.print("no targets found", highlight=False)

