"""Python gRPC stubs for containerd's Containers and Tasks services, generated from Debian's protos.

The protos come from `golang-github-containerd-containerd-dev` (and gogo's from
`golang-github-gogo-protobuf-dev`), unpacked into the cache, never installed. Their Go import paths
(`github.com/containerd/containerd/api/...`) are not importable Python package names, so a staged copy
rewrites them to `containerd_api/...`; the proto package names, and so the gRPC method paths, stay as they
are. `grpc_tools.protoc` compiles the staged copy into the cache, keyed by the debs and grpc_tools version.
Where the project's own committed stubs (the agent's) are importable, those are used instead.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

from testbed.image import debian

CONTAINERD_DEV = "golang-github-containerd-containerd-dev"
GOGO_DEV = "golang-github-gogo-protobuf-dev"
GO_IMPORT = "github.com/containerd/containerd/api/"
PY_PACKAGE = "containerd_api"
# Only what the Containers and Tasks services import, directly or not.
PROTOS = (
    "services/containers/v1/containers.proto",
    "services/tasks/v1/tasks.proto",
    "types/descriptor.proto",
    "types/metrics.proto",
    "types/mount.proto",
    "types/task/task.proto",
)
NAMESPACE_HEADER = "containerd-namespace"
PROJECT_PACKAGE = "faultmesh.agent.runtime.containerd_api"
STUBS_ENV = "FAULTMESH_TESTBED_STUBS"


class StubError(RuntimeError):
    """Compiling the protos failed; carries protoc's output."""


def _gocode(package: str) -> Path:
    return debian.unpack(package) / "usr" / "share" / "gocode" / "src"


def stubs_dir() -> Path:
    """The directory holding the generated `containerd_api` and `gogoproto` packages (built when missing)."""
    containerd_src = _gocode(CONTAINERD_DEV) / "github.com" / "containerd" / "containerd" / "api"
    gogo_proto = _gocode(GOGO_DEV) / "github.com" / "gogo" / "protobuf" / "gogoproto" / "gogo.proto"
    tools_version = version("grpcio-tools")
    recipe = "|".join([str(containerd_src), str(gogo_proto), tools_version]).encode() + Path(__file__).read_bytes()
    out = debian.cache_root() / "containerd-api" / hashlib.sha256(recipe).hexdigest()[:16]
    if (out / ".complete").is_file():
        return out
    with debian.file_lock(out.with_name(out.name + ".lock")):
        if not (out / ".complete").is_file():
            _compile(containerd_src, gogo_proto, out)
    return out


def _compile(containerd_src: Path, gogo_proto: Path, out: Path) -> None:
    from grpc_tools import protoc

    bundled = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto that ship with grpc_tools
    with tempfile.TemporaryDirectory(prefix="containerd-protos-") as scratch:
        stage = Path(scratch)
        for rel in PROTOS:
            text = (containerd_src / rel).read_text().replace(f'"{GO_IMPORT}', f'"{PY_PACKAGE}/')
            target = stage / PY_PACKAGE / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (stage / "gogoproto").mkdir()
        shutil.copy(gogo_proto, stage / "gogoproto" / "gogo.proto")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        sources = ["gogoproto/gogo.proto", *(f"{PY_PACKAGE}/{rel}" for rel in PROTOS)]
        argv = ["protoc", f"-I{stage}", f"-I{bundled}", f"--python_out={out}", f"--grpc_python_out={out}", *sources]
        if protoc.main(argv) != 0:
            raise StubError(f"grpc_tools.protoc failed on {', '.join(sources)}")
    (out / ".complete").touch()


@dataclass(frozen=True)
class Stubs:
    containers_pb2: ModuleType
    containers_grpc: ModuleType
    tasks_pb2: ModuleType
    tasks_grpc: ModuleType
    task_pb2: ModuleType


def stubs_package() -> str:
    """Which copy of the stubs to use: the project's committed ones, or ones generated here.

    One process cannot load both: they define the same proto symbols, and protobuf's default descriptor
    pool refuses a second definition. So the agent's committed modules win wherever they exist (tests
    of the agent and of the testbed share a process); FAULTMESH_TESTBED_STUBS=generated forces ours.
    """
    choice = os.environ.get(STUBS_ENV, "")
    if choice not in ("", "project", "generated"):
        raise StubError(f"{STUBS_ENV}={choice!r}: expected project or generated")
    if choice != "generated":
        try:
            importlib.import_module(f"{PROJECT_PACKAGE}.types.task.task_pb2")
            return PROJECT_PACKAGE
        except ImportError:
            if choice == "project":
                raise
    path = str(stubs_dir())
    if path not in sys.path:
        sys.path.append(path)
    return PY_PACKAGE


def load_stubs() -> Stubs:
    """Import the Containers and Tasks modules from the package `stubs_package()` picks."""
    package = stubs_package()
    base = f"{package}.services"
    return Stubs(
        containers_pb2=importlib.import_module(f"{base}.containers.v1.containers_pb2"),
        containers_grpc=importlib.import_module(f"{base}.containers.v1.containers_pb2_grpc"),
        tasks_pb2=importlib.import_module(f"{base}.tasks.v1.tasks_pb2"),
        tasks_grpc=importlib.import_module(f"{base}.tasks.v1.tasks_pb2_grpc"),
        task_pb2=importlib.import_module(f"{package}.types.task.task_pb2"),
    )


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
        import grpc

        self._stubs = load_stubs()
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._metadata = ((NAMESPACE_HEADER, namespace),)
        self._timeout = timeout
        self._containers = self._stubs.containers_grpc.ContainersStub(self._channel)
        self._tasks = self._stubs.tasks_grpc.TasksStub(self._channel)

    def _call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self._metadata, timeout=self._timeout)

    def list_containers(self, filters: tuple[str, ...] = ()) -> list[ContainerInfo]:
        """Containers.List; filters use containerd's syntax, e.g. `labels."app"==web`."""
        reply = self._call(self._containers.List, self._stubs.containers_pb2.ListContainersRequest(filters=filters))
        return [ContainerInfo(id=c.id, image=c.image, labels=dict(c.labels)) for c in reply.containers]

    def get_task(self, container_id: str) -> TaskInfo:
        """Tasks.Get: the task's PID (whose /proc/PID/ns/* an agent enters) and status."""
        reply = self._call(self._tasks.Get, self._stubs.tasks_pb2.GetRequest(container_id=container_id))
        process = reply.process
        status = self._stubs.task_pb2.Status.Name(process.status)
        return TaskInfo(id=process.id, pid=process.pid, status=status, exit_status=process.exit_status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
