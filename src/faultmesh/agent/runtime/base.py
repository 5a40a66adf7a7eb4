"""What every container runtime client offers, the container-id grammar, and the errors they raise.

A container id carries its runtime as a scheme (``containerd://ID``, ``docker://ID``, ``cri-o://ID``,
``process://PID``), the way Kubernetes reports it in a pod's ``containerStatuses[].containerID``.
"""

from __future__ import annotations

import signal as signals
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from .cgroups import CgroupPaths, cgroup_paths

RuntimeName = Literal["containerd", "docker", "cri-o", "process"]
#: Scheme → runtime. Chaos Mesh's configuration calls CRI-O "crio"; the id scheme is "cri-o".
SCHEMES: dict[str, RuntimeName] = {
    "containerd": "containerd",
    "docker": "docker",
    "cri-o": "cri-o",
    "process": "process",
}
SignalLike = signals.Signals | int | str


class ContainerRuntimeError(RuntimeError):
    """A runtime could not answer about a container; the message says which and why."""


class InvalidContainerIdError(ContainerRuntimeError, ValueError):
    """The id is not ``<runtime>://<id>`` with a runtime we know, or belongs to another runtime."""


class RuntimeUnavailableError(ContainerRuntimeError):
    """The runtime cannot be reached: no socket, nobody listening, or the daemon failing."""


class ContainerNotFoundError(ContainerRuntimeError):
    """The runtime does not know the container (or, in host mode, the process does not exist)."""


class ContainerNotRunningError(ContainerRuntimeError):
    """The container exists but has no running process to enter or signal."""


@dataclass(frozen=True)
class ContainerRef:
    """A parsed container id: ``runtime`` from the scheme, ``id`` as the runtime knows it."""

    runtime: RuntimeName
    id: str

    @classmethod
    def parse(cls, text: str) -> ContainerRef:
        scheme, separator, rest = text.partition("://")
        if not separator:
            raise InvalidContainerIdError(
                f"{text!r} is not a container id: "
                "expected containerd://ID, docker://ID, cri-o://ID or process://PID"
            )
        runtime = SCHEMES.get(scheme)
        if runtime is None:
            known = ", ".join(f"{s}://" for s in SCHEMES)
            raise InvalidContainerIdError(f"{text!r} names runtime {scheme!r}, which is none of {known}")
        if not rest or "/" in rest or any(c.isspace() for c in rest):
            raise InvalidContainerIdError(f"{text!r} has no usable id after {scheme}://")
        if runtime == "process" and not rest.isdigit():
            raise InvalidContainerIdError(f"{text!r}: a process id is process://PID with a decimal PID")
        return cls(runtime, rest)

    def __str__(self) -> str:
        return f"{self.runtime}://{self.id}"


def parse_signal(value: SignalLike) -> signals.Signals | int:
    """``SIGKILL``, ``KILL``, ``kill``, ``9`` or a :class:`signal.Signals` → the signal.

    Real-time signals without a name of their own (35..63 on Linux) come back as plain numbers.
    """
    if isinstance(value, signals.Signals):
        return value
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= signals.SIGRTMAX:
            raise ValueError(f"{value!r} is not a signal number in 1..{int(signals.SIGRTMAX)}")
        try:
            return signals.Signals(number)
        except ValueError:
            return number
    try:
        return signals.Signals[text if text.startswith("SIG") else "SIG" + text]
    except KeyError:
        raise ValueError(f"{value!r} is not a signal (e.g. SIGKILL, SIGTERM, 9)") from None


def signal_label(signal: signals.Signals | int) -> str:
    """``SIGKILL``, or the bare number of an unnamed real-time signal."""
    return signal.name if isinstance(signal, signals.Signals) else str(signal)


class ContainerRuntime(ABC):
    """One runtime's client: container id → PID, kill through the runtime, and the PID's cgroups.

    Methods take the full id (``docker://abc``) or the bare one (``abc``); an id of another runtime
    is refused. Clients are synchronous and thread-safe; the agent calls them from worker threads.
    """

    name: ClassVar[RuntimeName]

    def bare_id(self, container_id: str) -> str:
        """The id as this runtime knows it (scheme removed); refuses another runtime's id."""
        if "://" not in container_id:
            if not container_id:
                raise InvalidContainerIdError(f"an empty id is not a {self.name} container id")
            return container_id
        ref = ContainerRef.parse(container_id)
        if ref.runtime != self.name:
            raise InvalidContainerIdError(f"{container_id!r} is a {ref.runtime} id, not a {self.name} one")
        return ref.id

    @abstractmethod
    def pid_of(self, container_id: str) -> int:
        """The host PID of the container's main process (whose namespaces and cgroups faults use)."""

    @abstractmethod
    def kill(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        """Send ``signal`` to the container's main process, through the runtime where it offers that."""

    def cgroup_paths(self, pid: int) -> CgroupPaths:
        """The cgroup directories of a process (cgroup v1 hierarchies and/or the v2 one)."""
        return cgroup_paths(pid)

    def close(self) -> None:  # noqa: B027 -- clients without connections have nothing to release
        """Release connections; the client is unusable afterwards."""

    def __enter__(self) -> ContainerRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
