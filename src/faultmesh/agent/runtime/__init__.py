"""Container runtimes: a container id → the PID of its main process, its cgroups, and kill.

One interface (:class:`ContainerRuntime`: ``pid_of``, ``kill``, ``cgroup_paths``) with a client per
runtime -- containerd (gRPC), docker (Engine API), CRI-O (info endpoint), plain processes (host
mode) -- and :class:`Runtimes`, which routes an id to its client by the id's scheme. A runtime that
is not configured is found by its well-known socket. For the asyncio executor::

    runtimes = Runtimes(RuntimeConfig(runtime="containerd"))
    executor = Executor(resolve_pid=runtimes.resolve, kill_container=runtimes.kill_async)
"""

from __future__ import annotations

import asyncio
import signal as signals
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .base import (
    SCHEMES,
    ContainerNotFoundError,
    ContainerNotRunningError,
    ContainerRef,
    ContainerRuntime,
    ContainerRuntimeError,
    InvalidContainerIdError,
    RuntimeName,
    RuntimeUnavailableError,
    SignalLike,
    parse_signal,
)
from .cgroups import CgroupError, CgroupPaths, cgroup_paths

__all__ = [
    "WELL_KNOWN_SOCKETS",
    "CgroupError",
    "CgroupPaths",
    "ContainerNotFoundError",
    "ContainerNotRunningError",
    "ContainerRef",
    "ContainerRuntime",
    "ContainerRuntimeError",
    "InvalidContainerIdError",
    "RuntimeConfig",
    "RuntimeUnavailableError",
    "Runtimes",
    "cgroup_paths",
    "detect",
    "parse_runtime_name",
    "parse_signal",
]

#: Where each runtime's socket usually is, most common first (k3s and microk8s ship their own containerd).
WELL_KNOWN_SOCKETS: Mapping[RuntimeName, tuple[Path, ...]] = {
    "containerd": (
        Path("/run/containerd/containerd.sock"),
        Path("/var/run/containerd/containerd.sock"),
        Path("/run/k3s/containerd/containerd.sock"),
        Path("/var/snap/microk8s/common/run/containerd.sock"),
    ),
    "cri-o": (Path("/var/run/crio/crio.sock"), Path("/run/crio/crio.sock")),
    "docker": (Path("/var/run/docker.sock"), Path("/run/docker.sock")),
}
_SOCKET_NAMES: Mapping[str, RuntimeName] = {
    "containerd.sock": "containerd", "crio.sock": "cri-o", "docker.sock": "docker",
}


def parse_runtime_name(text: str) -> RuntimeName:
    """``containerd``, ``docker``, ``cri-o`` (or Chaos Mesh's ``crio``), ``process``."""
    name = text.strip().lower()
    runtime = SCHEMES.get("cri-o" if name == "crio" else name)
    if runtime is None:
        raise ValueError(
            f"{text!r} is not a container runtime: use containerd, docker, cri-o (crio) or process"
        )
    return runtime


def _is_socket(path: Path) -> bool:
    try:
        return path.is_socket()
    except OSError:
        return False


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/") if root != Path("/") else path


def detect(root: Path = Path("/")) -> list[tuple[RuntimeName, Path]]:
    """Every runtime whose socket is at a well-known path on this node (``root``: the host's ``/``)."""
    found: list[tuple[RuntimeName, Path]] = []
    for runtime, candidates in WELL_KNOWN_SOCKETS.items():
        for candidate in candidates:
            path = _under(root, candidate)
            if _is_socket(path):
                found.append((runtime, path))
                break
    return found


@dataclass(frozen=True)
class RuntimeConfig:
    """The agent's runtime settings; everything left unset is detected."""

    #: The node's runtime; its socket is ``socket`` when given.
    runtime: RuntimeName | None = None
    socket: Path | None = None
    #: containerd namespace of the containers (Kubernetes: ``k8s.io``).
    containerd_namespace: str = "k8s.io"
    #: Seconds one runtime call may take.
    timeout: float = 10.0
    #: Where the host's root is mounted in the agent (``/host`` in a pod), for finding sockets.
    host_root: Path = Path("/")
    #: Sockets of further runtimes (host mode may see containerd, docker and CRI-O at once).
    other_sockets: Mapping[RuntimeName, Path] = field(default_factory=dict)

    def configured_runtime(self) -> RuntimeName | None:
        if self.runtime is not None:
            return self.runtime
        if self.socket is not None:
            guessed = _SOCKET_NAMES.get(self.socket.name)
            if guessed is None:
                raise ValueError(f"socket {self.socket} is given without a runtime, and its name does not "
                                 "say which: set the runtime (containerd, docker or cri-o) too")
            return guessed
        return None


class Runtimes:
    """Routes a container id to the client of its runtime (opened on first use and kept)."""

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self._configured = self.config.configured_runtime()
        self._clients: dict[RuntimeName, ContainerRuntime] = {}
        self._lock = threading.Lock()

    def socket_for(self, runtime: RuntimeName) -> Path:
        """The configured socket for the configured runtime; else the first well-known one present."""
        if runtime == self._configured and self.config.socket is not None:
            return self.config.socket
        if runtime in self.config.other_sockets:
            return self.config.other_sockets[runtime]
        candidates = [_under(self.config.host_root, p) for p in WELL_KNOWN_SOCKETS.get(runtime, ())]
        for candidate in candidates:
            if _is_socket(candidate):
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise RuntimeUnavailableError(
            f"no {runtime} socket on this node (looked at {tried}); configure its socket"
        )

    def _open(self, runtime: RuntimeName) -> ContainerRuntime:
        timeout = self.config.timeout
        if runtime == "process":
            from .process import ProcessRuntime

            return ProcessRuntime()  # the agent shares the host's PID namespace: its /proc is the host's
        socket = self.socket_for(runtime)
        if runtime == "containerd":
            from .containerd import ContainerdRuntime

            return ContainerdRuntime(socket, namespace=self.config.containerd_namespace, timeout=timeout)
        if runtime == "docker":
            from .docker import DockerRuntime

            return DockerRuntime(socket, timeout=timeout)
        from .crio import CrioRuntime

        return CrioRuntime(socket, timeout=timeout)

    def client(self, container_id: str) -> ContainerRuntime:
        """The client for the id's runtime (``containerd://…`` → containerd)."""
        runtime = ContainerRef.parse(container_id).runtime
        with self._lock:
            client = self._clients.get(runtime)
            if client is None:
                client = self._clients[runtime] = self._open(runtime)
            return client

    def pid_of(self, container_id: str) -> int:
        return self.client(container_id).pid_of(container_id)

    def kill(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        self.client(container_id).kill(container_id, signal)

    def cgroup_paths(self, pid: int) -> CgroupPaths:
        return cgroup_paths(pid)

    async def resolve(self, container_id: str) -> int:
        """:meth:`pid_of` off the event loop (runtime calls block on sockets)."""
        return await asyncio.to_thread(self.pid_of, container_id)

    async def kill_async(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        """:meth:`kill` off the event loop."""
        await asyncio.to_thread(self.kill, container_id, signal)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> Runtimes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
