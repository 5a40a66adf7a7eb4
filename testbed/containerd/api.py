"""A gRPC client for the testbed's containerd, over the agent's committed containerd stubs.

The stubs are the agent's own (`faultmesh.agent.runtime.containerd_api`, generated from containerd's
protos by `python -m faultmesh.agent.runtime.containerd_api.generate` and committed): one copy for the
agent and its test bed, so a test exercises the very modules the agent ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from faultmesh.agent.runtime.containerd_api.services.containers.v1 import containers_pb2, containers_pb2_grpc
from faultmesh.agent.runtime.containerd_api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from faultmesh.agent.runtime.containerd_api.types.task import task_pb2

NAMESPACE_HEADER = "containerd-namespace"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    image: str
    labels: dict[str, str]


@dataclass(frozen=True)
class TaskInfo:
    id: str
    pid: int
    status: str  # UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING
    exit_status: int


class Client:
    """A gRPC client over containerd's socket for the read calls an agent needs."""

    def __init__(self, socket: Path, namespace: str, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._metadata = ((NAMESPACE_HEADER, namespace),)
        self._timeout = timeout
        services: Any = (containers_pb2_grpc, tasks_pb2_grpc)  # generated gRPC modules are untyped
        self._containers = services[0].ContainersStub(self._channel)
        self._tasks = services[1].TasksStub(self._channel)

    def _call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self._metadata, timeout=self._timeout)

    def list_containers(self, filters: tuple[str, ...] = ()) -> list[ContainerInfo]:
        """Containers.List; filters use containerd's syntax, e.g. `labels."app"==web`."""
        reply = self._call(self._containers.List, containers_pb2.ListContainersRequest(filters=filters))
        return [ContainerInfo(id=c.id, image=c.image, labels=dict(c.labels)) for c in reply.containers]

    def get_task(self, container_id: str) -> TaskInfo:
        """Tasks.Get: the task's PID (whose /proc/PID/ns/* an agent enters) and status."""
        reply = self._call(self._tasks.Get, tasks_pb2.GetRequest(container_id=container_id))
        process = reply.process
        status = task_pb2.Status.Name(process.status)
        return TaskInfo(id=process.id, pid=process.pid, status=status, exit_status=process.exit_status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
