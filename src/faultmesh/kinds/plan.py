"""The vocabulary of a fault plan: steps as data, each with its undo and its probe.

A planner (pure) turns (spec, target) into a :class:`Plan`. The agent's executor runs it: for
each step it journals the undo, runs ``apply``, and later runs ``undo`` in reverse order and the
probes to prove the step is gone. Nothing here touches the system, so ``faultmesh plan`` can
print exactly what would run, and planners are unit-tested without root.

Actions name *what* to do; *where* is the target's namespaces, chosen by the executor from the
target's process (``nsenter --target PID --net ...``), never by joining namespaces from the
agent's own threads.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

Namespace = Literal["net", "mnt", "pid", "uts", "ipc", "cgroup", "user"]
SpecT = TypeVar("SpecT", bound="BaseModel")


class PlanError(ValueError):
    """A spec a planner cannot turn into steps; the message starts with the field path at fault.

    A ValueError, so callers that catch a planner's ValueError keep working.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def spec_from_wire(model: type[SpecT], spec: Mapping[str, Any]) -> SpecT:
    """A kind's spec model from its wire form (the JSON the agent journals); errors name the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(spec)
    except ValidationError as error:
        first = error.errors()[0]
        path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise PlanError(path, first["msg"].removeprefix("Value error, ")) from None


@dataclass(frozen=True)
class Exec:
    """Run a command, inside the target's ``namespaces`` (none: on the node itself).

    ``tolerate`` lists stderr fragments that still count as success -- what an idempotent
    undo says when its object is already gone ("Cannot find device", "does not exist").
    """

    argv: tuple[str, ...]
    namespaces: tuple[Namespace, ...] = ()
    tolerate: tuple[str, ...] = ()
    #: Text to feed on standard input (``iptables-restore``, ``ipset restore``).
    stdin: str | None = None

    def describe(self) -> str:
        where = f"[{'+'.join(self.namespaces)}] " if self.namespaces else ""
        text = shlex.join(self.argv)
        if self.stdin is not None:
            text += " <<EOF\n" + self.stdin.rstrip("\n") + "\nEOF"
        return where + text


@dataclass(frozen=True)
class Spawn:
    """Start a long-running process for the fault's lifetime (stress-ng workers).

    The process starts stopped, is moved into the target's cgroups (so its usage counts
    against the target, not the agent), and only then continues. Its PID and start time are
    journalled, so the undo (:class:`Reap`) kills exactly it even after an agent restart.
    """

    argv: tuple[str, ...]
    #: Name under which the spawned process is known to later steps (``Reap(name)``).
    name: str
    namespaces: tuple[Namespace, ...] = ()
    #: Place the process in the cgroups of the target process.
    join_target_cgroup: bool = True

    def describe(self) -> str:
        where = f"[{'+'.join(self.namespaces)}] " if self.namespaces else ""
        cgroup = " (in the target's cgroups)" if self.join_target_cgroup else ""
        return f"spawn {self.name}: {where}{shlex.join(self.argv)}{cgroup}"


@dataclass(frozen=True)
class Reap:
    """Kill a process a :class:`Spawn` started (the whole process group), and wait for it."""

    name: str
    signal: str = "SIGKILL"

    def describe(self) -> str:
        return f"reap {self.name} ({self.signal})"


@dataclass(frozen=True)
class KillContainer:
    """Send a signal to a container's init process through its runtime (container-kill)."""

    container_id: str
    signal: str = "SIGKILL"

    def describe(self) -> str:
        return f"kill container {self.container_id} ({self.signal})"


@dataclass(frozen=True)
class KillProcess:
    """Send a signal to the target process itself (host mode's process kill)."""

    signal: str = "SIGKILL"

    def describe(self) -> str:
        return f"kill the target process ({self.signal})"


Action = Exec | Spawn | Reap | KillContainer | KillProcess


@dataclass(frozen=True)
class Probe:
    """Reads back whether a step is in effect: run ``argv`` and look for ``expect`` in stdout.

    ``present`` is what the probe answers when ``expect`` is found. A probe that exits
    non-zero with a ``tolerate`` fragment on stderr means "absent" (the device or the set
    is gone); any other failure is an error, never taken as "absent".
    """

    argv: tuple[str, ...]
    expect: str
    namespaces: tuple[Namespace, ...] = ()
    tolerate: tuple[str, ...] = ()
    #: For a Spawn: the probe asks whether the named process is alive instead of running argv.
    process: str | None = None

    def describe(self) -> str:
        if self.process is not None:
            return f"is {self.process} alive?"
        where = f"[{'+'.join(self.namespaces)}] " if self.namespaces else ""
        return f"{where}{shlex.join(self.argv)} | contains {self.expect!r}"


@dataclass(frozen=True)
class Step:
    """One change to the system, how to take it out, and how to see whether it is there.

    ``undo`` is None for what cannot be taken back (a kill); ``probe`` is None where the
    kernel keeps nothing to read back (a kill, again).
    """

    name: str
    apply: Action
    undo: Action | None = None
    probe: Probe | None = None


@dataclass(frozen=True)
class Target:
    """What a plan acts on: a container (by runtime id) or a host process, on this node."""

    #: ``containerd://…``, ``docker://…``, ``cri-o://…``, or ``process://PID``.
    container_id: str
    #: Record id in the experiment's status (``namespace/pod`` or ``namespace/pod/container``).
    record_id: str = ""
    #: Facts the planner may use: pod IPs, interface names, the runtime's cgroup path.
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The ordered steps of one fault on one target."""

    kind: str
    target: Target
    steps: tuple[Step, ...]
    #: One-shot faults (kills) have nothing to recover.
    one_shot: bool = False

    def describe(self) -> list[str]:
        lines: list[str] = []
        for index, step in enumerate(self.steps, start=1):
            lines.append(f"{index}. {step.name}")
            lines.append(f"   apply: {step.apply.describe()}")
            if step.undo is not None:
                lines.append(f"   undo:  {step.undo.describe()}")
            if step.probe is not None:
                lines.append(f"   probe: {step.probe.describe()}")
        return lines
