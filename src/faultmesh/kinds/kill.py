"""Kill planners: PodChaos container-kill through the container's runtime, and host mode's process kill.

A kill is one-shot: nothing is left to undo or probe (the runtime restarts the container if its
policy says so, exactly as after a crash). Chaos Mesh always sends SIGKILL for container-kill;
host mode's process kill sends the spec's signal.
"""

from __future__ import annotations

import signal as signals
from collections.abc import Mapping
from typing import Any

from ..api.podchaos import PodChaosSpec
from .plan import KillContainer, KillProcess, Plan, PlanError, Step, Target, spec_from_wire

PROCESS_SCHEME = "process://"
#: Linux signal numbers (1..31 standard, 32..64 real-time).
_MAX_SIGNAL = 64


def signal_name(signal: int | str, path: str = "signal") -> str:
    """``9`` → ``SIGKILL``, ``"term"`` → ``SIGTERM``; a real-time number without a name stays a number."""
    text = str(signal).strip().upper()
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= _MAX_SIGNAL:
            raise PlanError(path, f"{signal} is not a signal number in 1..{_MAX_SIGNAL}")
        try:
            return signals.Signals(number).name
        except ValueError:
            return str(number)
    name = text if text.startswith("SIG") else "SIG" + text
    if name not in signals.Signals.__members__:
        raise PlanError(path, f"{signal!r} is not a signal name (e.g. SIGKILL, SIGTERM) or number")
    return name


def plan_process_kill(
    target: Target, signal: int | str = "SIGKILL", kind: str = "PhysicalMachineChaos"
) -> Plan:
    """Signal the target process itself (host mode: ``process://PID``)."""
    chosen = signal_name(signal)
    step = Step(name=f"send {chosen} to the process", apply=KillProcess(chosen))
    return Plan(kind=kind, target=target, steps=(step,), one_shot=True)


def plan_container_kill(target: Target, signal: int | str = "SIGKILL") -> Plan:
    """Kill the container's main process through its runtime; in host mode the "container" is a process."""
    if target.container_id.startswith(PROCESS_SCHEME):
        return plan_process_kill(target, signal, kind="PodChaos")
    chosen = signal_name(signal)
    step = Step(name=f"kill the container ({chosen})", apply=KillContainer(target.container_id, chosen))
    return Plan(kind="PodChaos", target=target, steps=(step,), one_shot=True)


def plan_pod_chaos(spec: PodChaosSpec, target: Target) -> Plan:
    """PodChaos on one target. Only container-kill is the node agent's work."""
    if spec.action != "container-kill":
        raise PlanError("spec.action", f"{spec.action} is done through the Kubernetes API (the pod is "
                                       "deleted or its images swapped), not by the node agent")
    return plan_container_kill(target)


def plan_pod_chaos_wire(spec: Mapping[str, Any], target: Target) -> Plan:
    """The agent's planner for PodChaos: the spec in wire form (camelCase JSON)."""
    return plan_pod_chaos(spec_from_wire(PodChaosSpec, spec), target)
