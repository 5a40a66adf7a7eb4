"""StressChaos planner: Chaos Mesh's stress-ng mapping, cgroup placement, undo/probe shape, refused options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.loader import load_text
from faultmesh.api.stresschaos import StressChaos, StressChaosSpec
from faultmesh.kinds.plan import Plan, PlanError, Probe, Reap, Spawn, Target
from faultmesh.kinds.stress import BASE_OPTIONS, REFUSED_OPTIONS, plan_stress, plan_stress_wire, refused_option

TARGET = Target("containerd://abc", "shop/web-0/app")
EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "chaos-mesh" / "examples"


def _spec(**fields: Any) -> StressChaosSpec:
    return StressChaosSpec.model_validate({"mode": "all", "selector": {"namespaces": ["shop"]}, **fields})


def _spawns(plan: Plan) -> list[Spawn]:
    spawns = []
    for step in plan.steps:
        assert isinstance(step.apply, Spawn)
        spawns.append(step.apply)
    return spawns


def test_cpu_stressor_follows_chaos_mesh() -> None:
    plan = plan_stress(_spec(stressors={"cpu": {"workers": 2, "load": 40, "options": ["--cpu-method all"]}}), TARGET)
    (spawn,) = _spawns(plan)
    assert spawn.argv == (
        "stress-ng",
        *BASE_OPTIONS,
        "--cpu-load-slice",
        "10",
        "--cpu-method",
        "sqrt",
        "--cpu",
        "2",
        "--cpu-load",
        "40",
        "--cpu-method",
        "all",
    )
    assert spawn.name == "stress-cpu"
    assert spawn.join_target_cgroup
    assert spawn.namespaces == ("pid",)
    step = plan.steps[0]
    assert step.undo == Reap("stress-cpu", signal="SIGTERM")
    assert isinstance(step.probe, Probe)
    assert step.probe.process == "stress-cpu"
    assert plan.kind == "StressChaos"
    assert plan.target is TARGET
    assert not plan.one_shot


def test_cpu_load_is_left_out_when_unset() -> None:
    (spawn,) = _spawns(plan_stress(_spec(stressors={"cpu": {"workers": 1}}), TARGET))
    assert "--cpu-load" not in spawn.argv
    assert spawn.argv[-2:] == ("--cpu", "1")


@pytest.mark.parametrize(
    ("size", "vm_bytes"),
    [("256MB", "256000000b"), ("1GiB", "1073741824b"), ("512 kb", "512000b"), ("50%", "50%"), (None, "100%")],
)
def test_memory_stressor_holds_the_total_size(size: str | None, vm_bytes: str) -> None:
    memory: dict[str, Any] = {"workers": 3}
    if size is not None:
        memory["size"] = size
    (spawn,) = _spawns(plan_stress(_spec(stressors={"memory": memory}), TARGET))
    assert spawn.argv == (
        "sh",
        "-c",
        'echo 0 > /proc/self/oom_score_adj && exec "$@"',
        "oom-score-adj",
        "stress-ng",
        *BASE_OPTIONS,
        "--no-oom-adjust",
        "--vm",
        "3",
        "--vm-bytes",
        vm_bytes,
        "--vm-hang",
        "0",
    )
    assert spawn.name == "stress-memory"


def test_oom_score_adj_is_applied_to_the_memory_stressor() -> None:
    spec = _spec(stressors={"memory": {"workers": 1, "size": "10MB", "oomScoreAdj": -1000, "options": ["--vm-keep"]}})
    (spawn,) = _spawns(plan_stress(spec, TARGET))
    # /proc/self names the writer in the node's /proc even inside the target's PID namespace.
    assert spawn.argv[:5] == ("sh", "-c", 'echo -1000 > /proc/self/oom_score_adj && exec "$@"', "oom-score-adj",
                              "stress-ng")
    assert spawn.argv[-1] == "--vm-keep"
    assert "choom" not in spawn.argv


def test_both_stressors_run_as_two_processes_cpu_first() -> None:
    plan = plan_stress(_spec(stressors={"cpu": {"workers": 1}, "memory": {"workers": 1, "size": "1MB"}}), TARGET)
    assert [s.name for s in _spawns(plan)] == ["stress-cpu", "stress-memory"]
    assert [s.undo for s in plan.steps] == [Reap("stress-cpu", "SIGTERM"), Reap("stress-memory", "SIGTERM")]


def test_stressng_stressors_win_over_stressors() -> None:
    spec = _spec(stressors={"cpu": {"workers": 1}}, stressngStressors="--vm 2 --vm-bytes '64 m' --sock 1")
    (spawn,) = _spawns(plan_stress(spec, TARGET))
    assert spawn.argv == ("stress-ng", *BASE_OPTIONS, "--vm", "2", "--vm-bytes", "64 m", "--sock", "1")
    assert spawn.name == "stress-ng"


def test_plan_describes_itself() -> None:
    lines = plan_stress(_spec(stressors={"cpu": {"workers": 1, "load": 10}}), TARGET).describe()
    assert lines[0] == "1. start 1 CPU worker(s)"
    assert "spawn stress-cpu: [pid] stress-ng --timeout 0" in lines[1]
    assert lines[1].endswith("(in the target's cgroups)")
    assert lines[2] == "   undo:  reap stress-cpu (SIGTERM)"
    assert lines[3] == "   probe: is stress-cpu alive?"


@pytest.mark.parametrize(
    "token",
    [
        "--log-file",
        "--log-file=/etc/x",
        "--log-f",
        "--job",
        "--jo",
        "-j",
        "-Y",
        "-vY",
        "-kj",
        "--yaml",
        "--temp-path",
        "--te",
        "--keep-files",
        "--sched",
        "--sched-prio",
        "--ionice-class",
        "--ionice-level",
        "--ignite-cpu",
        "--pathological",
        "--cpu-online",
        "--cpu-online-all",
        "--swap",
        "--reboot",
        "--dev",
        "--dev-file",
        "--rawdev",
        "--s",
        "--i",
    ],
)
def test_options_that_reach_past_the_container_are_refused(token: str) -> None:
    assert refused_option(token) is not None


@pytest.mark.parametrize(
    "token",
    [
        "--cpu",
        "--cpu=2",
        "--io",
        "--cpu-load",
        "-c",
        "-c4",
        "-cY",
        "-l",
        "--timeout",
        "--taskset",
        "--vm-keep",
        "--schedpolicy",
        "--metrics-brief",
        "--hdd",
        "/var/log",
        "2",
        "-30",
        "--dentry",
        "--swap-ops",
        "--dev-shm",
    ],
)
def test_ordinary_options_pass(token: str) -> None:
    assert refused_option(token) is None


@given(st.sampled_from(sorted(REFUSED_OPTIONS)), st.integers(min_value=1, max_value=20), st.booleans())
def test_every_abbreviation_of_a_refused_option_is_refused(name: str, length: int, with_value: bool) -> None:
    abbreviation = name[:length]
    if abbreviation in ("cpu", "io"):  # real options of their own, which getopt takes exactly
        return
    assert refused_option(f"--{abbreviation}" + ("=1" if with_value else "")) is not None


def test_refusal_names_the_field_and_the_reason() -> None:
    spec = _spec(stressors={"cpu": {"workers": 1, "options": ["--cpu-method all", "--log-file /etc/passwd"]}})
    with pytest.raises(PlanError) as caught:
        plan_stress(spec, TARGET)
    assert caught.value.path == "spec.stressors.cpu.options[1]"
    assert str(caught.value) == (
        "spec.stressors.cpu.options[1]: '--log-file' is not allowed: --log-file names a file on the node"
    )
    with pytest.raises(PlanError, match=r"^spec\.stressngStressors: '-vY' is not allowed: -Y \(--yaml\)"):
        plan_stress(_spec(stressngStressors="--cpu 1 -vY out.yaml"), TARGET)
    with pytest.raises(
        PlanError,
        match=r"^spec\.stressors\.memory\.options\[0\]: '--sched-p' is not allowed: "
        r"--sched-p abbreviates --sched-prio",
    ):
        plan_stress(_spec(stressors={"memory": {"workers": 1, "options": ["--sched-p 5"]}}), TARGET)


def test_unbalanced_quotes_are_a_clear_error() -> None:
    with pytest.raises(PlanError, match=r"^spec\.stressngStressors: .* cannot be split into arguments"):
        plan_stress(_spec(stressngStressors="--cpu 1 --cpu-method 'sqrt"), TARGET)


@pytest.mark.parametrize("size", ["0", "0GB", "0%"])
def test_a_size_of_nothing_is_refused(size: str) -> None:
    with pytest.raises(PlanError, match=r"^spec\.stressors\.memory\.size: .* takes no memory"):
        plan_stress(_spec(stressors={"memory": {"workers": 1, "size": size}}), TARGET)


def test_nothing_to_stress_is_refused() -> None:
    spec = StressChaosSpec.model_construct(stressors=None, stressng_stressors="  ")
    with pytest.raises(PlanError, match=r"^spec\.stressors: is required unless stressngStressors is given"):
        plan_stress(spec, TARGET)
    zero = _spec(stressors={"cpu": {"workers": 0}})  # the API's rules refuse it; the planner must not crash
    with pytest.raises(PlanError, match="stresses nothing"):
        plan_stress(zero, TARGET)


@given(workers=st.integers(1, 8192), load=st.none() | st.integers(0, 100), mem=st.integers(1, 2**40))
def test_structured_stressors_never_refuse_themselves(workers: int, load: int | None, mem: int) -> None:
    cpu: dict[str, Any] = {"workers": workers} if load is None else {"workers": workers, "load": load}
    plan = plan_stress(_spec(stressors={"cpu": cpu, "memory": {"workers": workers, "size": f"{mem}B"}}), TARGET)
    cpu_spawn, memory_spawn = _spawns(plan)
    assert ("--cpu", str(workers)) == cpu_spawn.argv[cpu_spawn.argv.index("--cpu") :][:2]
    assert f"{mem}b" in memory_spawn.argv
    for spawn in (cpu_spawn, memory_spawn):
        stress_ng = spawn.argv[spawn.argv.index("stress-ng") + 1 + len(BASE_OPTIONS) :]
        assert all(refused_option(token) is None for token in stress_ng)


@pytest.mark.parametrize("name", ["burn-cpu.yaml", "cause-pod-oom.yaml"])
def test_chaos_mesh_examples_plan(name: str) -> None:
    (obj,) = load_text((EXAMPLES / name).read_text(), source=name).objects
    assert isinstance(obj, StressChaos)
    plan = plan_stress(obj.spec, TARGET)
    assert plan.steps
    assert all(isinstance(step.undo, Reap) for step in plan.steps)


def test_the_agents_planner_takes_the_wire_spec() -> None:
    wire = {"mode": "all", "selector": {"namespaces": ["shop"]},
            "stressors": {"memory": {"workers": 1, "size": "1MB", "oomScoreAdj": 5}}}
    (spawn,) = _spawns(plan_stress_wire(wire, TARGET))
    assert spawn.argv[2] == "echo 5 > /proc/self/oom_score_adj && exec \"$@\""
    bad = {**wire, "stressors": {"cpu": {"workers": "many"}}}
    with pytest.raises(PlanError) as caught:
        plan_stress_wire(bad, TARGET)
    assert caught.value.path == "spec.stressors.cpu.workers"
