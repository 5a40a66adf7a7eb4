"""Docker through its Engine API on the unix socket: inspect for the PID, ``kill`` for container-kill.

Paths are unversioned, which the daemon serves as its current API version; the calls used here
(``GET /containers/{id}/json``, ``POST /containers/{id}/kill``, and ``GET /containers/json`` for host
mode's listing) have kept their shape for years.
"""

from __future__ import annotations

import signal as signals
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlencode

from .base import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    ContainerRuntimeError,
    RuntimeName,
    SignalLike,
    parse_signal,
    signal_label,
)
from .unixhttp import Response, UnixHTTPRuntime

DEFAULT_SOCKET = Path("/var/run/docker.sock")


class DockerRuntime(UnixHTTPRuntime):
    name: ClassVar[RuntimeName] = "docker"
    daemon = "docker"
    default_socket = DEFAULT_SOCKET

    def _failure(self, container_id: str, reply: Response, doing: str) -> ContainerRuntimeError:
        message = reply.message() or f"HTTP {reply.status}"
        if reply.status == 404:
            return ContainerNotFoundError(f"docker has no container {container_id}: {message}")
        if reply.status == 409:
            return ContainerNotRunningError(f"docker container {container_id} is not running: {message}")
        return ContainerRuntimeError(
            f"docker could not {doing} {container_id} (HTTP {reply.status}): {message}"
        )

    def inspect(self, container_id: str) -> dict[str, object]:
        """The container's inspect document (``docker inspect``)."""
        bare = self.bare_id(container_id)
        reply = self._http.request("GET", f"/containers/{quote(bare, safe='')}/json")
        if reply.status != 200:
            raise self._failure(bare, reply, "inspect")
        try:
            document = reply.json()
        except ValueError:
            raise ContainerRuntimeError(f"docker's inspect of {bare} is not JSON: {reply.body[:200]!r}") from None
        if not isinstance(document, dict):
            raise ContainerRuntimeError(f"docker's inspect of {bare} is not a JSON object")
        return document

    def list_containers(self) -> list[dict[str, object]]:
        """Every container, stopped ones too (``docker ps -a``): Id, Names, Labels, State... per container."""
        reply = self._http.request("GET", "/containers/json?all=1")
        if reply.status != 200:
            raise ContainerRuntimeError(f"docker could not list containers (HTTP {reply.status}): {reply.message()}")
        try:
            document = reply.json()
        except ValueError:
            raise ContainerRuntimeError(f"docker's container list is not JSON: {reply.body[:200]!r}") from None
        if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
            raise ContainerRuntimeError("docker's container list is not a JSON array of objects")
        return document

    def pid_of(self, container_id: str) -> int:
        bare = self.bare_id(container_id)
        state = self.inspect(bare).get("State")
        if not isinstance(state, dict):
            raise ContainerRuntimeError(f"docker's inspect of {bare} has no State")
        pid = state.get("Pid")
        if not isinstance(pid, int):
            raise ContainerRuntimeError(f"docker's inspect of {bare} has no State.Pid")
        if pid <= 0:
            status = state.get("Status", "?")
            raise ContainerNotRunningError(f"docker container {bare} is not running (status {status})")
        return pid

    def kill(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        bare = self.bare_id(container_id)
        query = urlencode({"signal": signal_label(parse_signal(signal))})
        reply = self._http.request("POST", f"/containers/{quote(bare, safe='')}/kill?{query}")
        if reply.status not in (200, 204):
            raise self._failure(bare, reply, "kill")
