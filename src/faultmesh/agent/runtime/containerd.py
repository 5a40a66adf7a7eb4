"""containerd through its gRPC API (Containers, Tasks, Version services) on its unix socket.

Every call carries the ``containerd-namespace`` header: Kubernetes' containers live in ``k8s.io``.
The modules under ``containerd_api`` are generated from containerd's own protos (see its ``generate``).
"""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import grpc

from .base import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    ContainerRuntime,
    ContainerRuntimeError,
    RuntimeName,
    RuntimeUnavailableError,
    SignalLike,
    parse_signal,
)
from .containerd_api.services.containers.v1 import containers_pb2, containers_pb2_grpc
from .containerd_api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from .containerd_api.services.version.v1 import version_pb2_grpc
from .containerd_api.types.task import task_pb2

DEFAULT_SOCKET = Path("/run/containerd/containerd.sock")
#: The namespace the CRI plugin (hence Kubernetes) puts containers in.
KUBERNETES_NAMESPACE = "k8s.io"
NAMESPACE_HEADER = "containerd-namespace"


@dataclass(frozen=True)
class TaskInfo:
    """A container's task: its main process and what containerd says about it."""

    container_id: str
    pid: int
    #: UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED or PAUSING.
    status: str
    #: Meaningful once STOPPED: 128 + signal for a killed process (137 after SIGKILL).
    exit_status: int


class ContainerdRuntime(ContainerRuntime):
    name: ClassVar[RuntimeName] = "containerd"

    def __init__(self, socket: Path = DEFAULT_SOCKET, namespace: str = KUBERNETES_NAMESPACE,
                 timeout: float = 10.0) -> None:
        self.socket = socket
        self.namespace = namespace
        self.timeout = timeout
        self._metadata = ((NAMESPACE_HEADER, namespace),)
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        # The generated gRPC modules are untyped; the typed surface is this class.
        services: Any = (containers_pb2_grpc, tasks_pb2_grpc, version_pb2_grpc)
        self._containers = services[0].ContainersStub(self._channel)
        self._tasks = services[1].TasksStub(self._channel)
        self._version = services[2].VersionStub(self._channel)

    # ---- calls ---------------------------------------------------------------------------------
    def _call(self, method: Any, request: Any, container_id: str, doing: str) -> Any:
        if not self.socket.exists():
            raise RuntimeUnavailableError(f"containerd socket {self.socket} does not exist")
        try:
            return method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._translate(error, container_id, doing) from None

    def _translate(self, error: grpc.RpcError, container_id: str, doing: str) -> ContainerRuntimeError:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
        where = f"containerd at {self.socket}"
        if code == grpc.StatusCode.UNAVAILABLE:
            return RuntimeUnavailableError(f"{where} is unavailable: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return RuntimeUnavailableError(f"{where} did not answer {doing} within {self.timeout:g} s")
        if code == grpc.StatusCode.NOT_FOUND and container_id:
            if not self._container_exists(container_id):
                return ContainerNotFoundError(
                    f"containerd has no container {container_id} in namespace {self.namespace!r}"
                )
            return ContainerNotRunningError(
                f"containerd container {container_id} has no running task: {details}"
            )
        return ContainerRuntimeError(f"{where}: {doing} {container_id} failed ({code}): {details}")

    def _container_exists(self, container_id: str) -> bool:
        try:
            self._containers.Get(containers_pb2.GetContainerRequest(id=container_id),
                                 metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise self._translate_plain(error) from None
        return True

    def _translate_plain(self, error: grpc.RpcError) -> ContainerRuntimeError:
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        return RuntimeUnavailableError(f"containerd at {self.socket}: {details}")

    # ---- the interface ---------------------------------------------------------------------------
    def task(self, container_id: str) -> TaskInfo:
        """The container's task (main process) as containerd reports it."""
        bare = self.bare_id(container_id)
        reply = self._call(self._tasks.Get, tasks_pb2.GetRequest(container_id=bare), bare, "Tasks.Get")
        process = reply.process
        return TaskInfo(container_id=bare, pid=process.pid, status=task_pb2.Status.Name(process.status),
                        exit_status=process.exit_status)

    def pid_of(self, container_id: str) -> int:
        info = self.task(container_id)
        if info.status == "STOPPED" or info.pid <= 0:
            raise ContainerNotRunningError(
                f"containerd container {info.container_id} is not running (task {info.status}, "
                f"exit status {info.exit_status})"
            )
        return info.pid

    def kill(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        bare = self.bare_id(container_id)
        request = tasks_pb2.KillRequest(container_id=bare, signal=int(parse_signal(signal)))
        self._call(self._tasks.Kill, request, bare, "Tasks.Kill")

    def wait(self, container_id: str, timeout: float | None = None) -> int:
        """Block until the task exits; its exit status."""
        bare = self.bare_id(container_id)
        if not self.socket.exists():
            raise RuntimeUnavailableError(f"containerd socket {self.socket} does not exist")
        try:
            reply = self._tasks.Wait(tasks_pb2.WaitRequest(container_id=bare), metadata=self._metadata,
                                     timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as error:
            raise self._translate(error, bare, "Tasks.Wait") from None
        return int(reply.exit_status)

    def list_ids(self, filters: tuple[str, ...] = ()) -> list[str]:
        """``containerd://ID`` of every container in the namespace; filters use containerd's syntax."""
        reply = self._call(self._containers.List, containers_pb2.ListContainersRequest(filters=filters), "",
                           "Containers.List")
        return [f"containerd://{container.id}" for container in reply.containers]

    def labels(self, container_id: str) -> dict[str, str]:
        bare = self.bare_id(container_id)
        reply = self._call(self._containers.Get, containers_pb2.GetContainerRequest(id=bare), bare,
                           "Containers.Get")
        return dict(reply.container.labels)

    def version(self) -> str:
        """The daemon's version: a cheap call that proves it answers."""
        from google.protobuf import empty_pb2

        reply = self._call(self._version.Version, empty_pb2.Empty(), "", "Version.Version")
        return str(reply.version)

    def close(self) -> None:
        self._channel.close()
