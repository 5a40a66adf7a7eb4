"""Kill planners: container-kill through the runtime, process kill in host mode, one-shot plans."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.podchaos import PodChaosSpec
from faultmesh.kinds.kill import (
    plan_container_kill,
    plan_pod_chaos,
    plan_pod_chaos_wire,
    plan_process_kill,
    signal_name,
)
from faultmesh.kinds.plan import KillContainer, KillProcess, PlanError, Target

CONTAINER = Target("containerd://abc123", "shop/web-0/app")
PROCESS = Target("process://4242", "host/4242")


def _spec(**fields: Any) -> PodChaosSpec:
    return PodChaosSpec.model_validate({"mode": "all", "selector": {"namespaces": ["shop"]}, **fields})


def test_container_kill_goes_through_the_runtime_with_sigkill() -> None:
    plan = plan_pod_chaos(_spec(action="container-kill", containerNames=["app"]), CONTAINER)
    (step,) = plan.steps
    assert step.apply == KillContainer("containerd://abc123", "SIGKILL")
    assert step.undo is None
    assert step.probe is None
    assert plan.one_shot
    assert plan.kind == "PodChaos"
    assert plan.describe() == [
        "1. kill the container (SIGKILL)",
        "   apply: kill container containerd://abc123 (SIGKILL)",
    ]


def test_container_kill_of_a_host_process_signals_the_process() -> None:
    plan = plan_container_kill(PROCESS)
    (step,) = plan.steps
    assert step.apply == KillProcess("SIGKILL")
    assert plan.one_shot


def test_process_kill_sends_the_specs_signal() -> None:
    plan = plan_process_kill(PROCESS, 15)
    assert plan.steps[0].apply == KillProcess("SIGTERM")
    assert plan.kind == "PhysicalMachineChaos"
    assert plan.one_shot
    assert plan.steps[0].name == "send SIGTERM to the process"


@pytest.mark.parametrize("action", ["pod-kill", "pod-failure"])
def test_pod_level_actions_are_not_the_agents(action: str) -> None:
    with pytest.raises(PlanError, match=rf"^spec\.action: {action} is done through the Kubernetes API"):
        plan_pod_chaos(_spec(action=action), CONTAINER)


@pytest.mark.parametrize(
    ("given_signal", "name"),
    [(9, "SIGKILL"), ("9", "SIGKILL"), ("term", "SIGTERM"), ("SIGUSR1", "SIGUSR1"), (" hup ", "SIGHUP"), (40, "40")],
)
def test_signal_names(given_signal: int | str, name: str) -> None:
    assert signal_name(given_signal) == name


@pytest.mark.parametrize("bad", [0, 65, "SIGNOPE", "", "-9"])
def test_bad_signals_are_refused_with_the_field(bad: int | str) -> None:
    with pytest.raises(PlanError, match=r"^spec\.signal: "):
        signal_name(bad, "spec.signal")


@given(st.integers(min_value=1, max_value=64))
def test_every_linux_signal_number_has_a_name_the_runtime_reads(number: int) -> None:
    name = signal_name(number)
    assert name == str(number) or name.startswith("SIG")
    assert plan_process_kill(PROCESS, number).steps[0].apply == KillProcess(name)


def test_the_agents_planner_takes_the_wire_spec() -> None:
    wire = {"action": "container-kill", "mode": "one", "selector": {"namespaces": ["shop"]}, "containerNames": ["app"]}
    assert plan_pod_chaos_wire(wire, CONTAINER).steps[0].apply == KillContainer("containerd://abc123", "SIGKILL")
    with pytest.raises(PlanError, match=r"^spec\.action: "):
        plan_pod_chaos_wire({**wire, "action": "explode"}, CONTAINER)
