"""CRI-O through its info endpoint on the socket: ``GET /containers/{id}`` answers the container's PID.

CRI-O offers no kill over that endpoint (and its CRI StopContainer would stop, not signal), so a kill
signals the PID directly, as Chaos Mesh does; the agent runs with the host's PID namespace.
"""

from __future__ import annotations

import os
import signal as signals
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from .base import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    ContainerRuntimeError,
    RuntimeName,
    SignalLike,
    parse_signal,
    signal_label,
)
from .unixhttp import UnixHTTPRuntime

DEFAULT_SOCKET = Path("/var/run/crio/crio.sock")


class CrioRuntime(UnixHTTPRuntime):
    name: ClassVar[RuntimeName] = "cri-o"
    daemon = "CRI-O"
    default_socket = DEFAULT_SOCKET

    def info(self, container_id: str) -> dict[str, object]:
        """CRI-O's info document for the container (name, pid, image, labels, sandbox...)."""
        bare = self.bare_id(container_id)
        reply = self._http.request("GET", f"/containers/{quote(bare, safe='')}", host="crio")
        if reply.status == 404:
            raise ContainerNotFoundError(f"CRI-O has no container {bare}: {reply.message()}")
        if reply.status != 200:
            raise ContainerRuntimeError(
                f"CRI-O could not describe {bare} (HTTP {reply.status}): {reply.message()}"
            )
        try:
            document = reply.json()
        except ValueError:
            excerpt = reply.body[:200]
            raise ContainerRuntimeError(f"CRI-O's answer about {bare} is not JSON: {excerpt!r}") from None
        if not isinstance(document, dict):
            raise ContainerRuntimeError(f"CRI-O's answer about {bare} is not a JSON object")
        return document

    def pid_of(self, container_id: str) -> int:
        bare = self.bare_id(container_id)
        pid = self.info(bare).get("pid")
        if not isinstance(pid, int):
            raise ContainerRuntimeError(f"CRI-O's answer about {bare} has no pid")
        if pid <= 0:
            raise ContainerNotRunningError(f"CRI-O container {bare} has no running process (pid {pid})")
        return pid

    def kill(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        chosen = parse_signal(signal)
        pid = self.pid_of(container_id)
        try:
            os.kill(pid, chosen)
        except ProcessLookupError:
            raise ContainerNotRunningError(f"CRI-O container {self.bare_id(container_id)} exited before "
                                      f"{signal_label(chosen)} reached pid {pid}") from None
