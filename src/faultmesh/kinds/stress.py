"""StressChaos planner: stress-ng workers in the target container's cgroups, reaped on recovery.

Each stressor is one :class:`Spawn` of ``stress-ng`` -- started stopped, moved into the target's
cgroups so its CPU time and memory count against the container (and its limits apply), then let
go -- inside the target's PID namespace, so the workers die with the container. Its probe asks
whether the process is alive; its undo reaps it (SIGTERM, so stress-ng removes its temporary
files; the executor escalates to SIGKILL).

The mapping follows Chaos Mesh:

- cpu: ``--cpu-load-slice 10 --cpu-method sqrt --cpu N [--cpu-load L]`` (the slice and method make
  several workers reach a container's CPU limit), then ``options``.
- memory: Chaos Mesh's memStress takes ``size`` as the total over all workers and holds it
  without burning CPU. stress-ng 0.15 (Debian 12) does the same with ``--vm N --vm-bytes SIZE
  --vm-hang 0``: it shares ``--vm-bytes`` among the workers, and each touches its share once and
  then sleeps holding it. An unset size takes all memory (``100%``), as the CRD documents.
  ``oomScoreAdj`` is written before stress-ng starts and stress-ng told to keep it
  (``--no-oom-adjust``), so the workers carry exactly the spec's value (default 0; Chaos Mesh
  skips 0 and leaves the daemon's).
- ``stressngStressors`` replaces ``stressors`` when given (Chaos Mesh: it "wins").

Raw options (``stressngStressors``, ``options``) run as root on the node, so options that reach
past the container are refused: files named on the node (``--log-file``, ``--job``, ``--yaml``,
``--temp-path``, ``--dev-file``, ``--keep-files``), node-wide scheduling and I/O priority
(``--sched*``, ``--ionice-*``), CPU frequency (``--ignite-cpu``), and stressors that act on the
whole node (``--pathological``, ``--cpu-online``, ``--swap``, ``--reboot``, ``--dev``,
``--rawdev``). ``--taskset`` stays: the target's cpuset cgroup bounds it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..api.stresschaos import CPUStressor, MemoryStressor, StressChaosSpec, parse_memory_size
from .plan import Namespace, Plan, PlanError, Probe, Reap, Spawn, Step, Target, spec_from_wire

STRESS_NG = "stress-ng"
#: Chaos Mesh joins the target's PID namespace (EnterNS): the workers die with the container.
NAMESPACES: tuple[Namespace, ...] = ("pid",)
#: Every stress-ng runs with these first: the agent's lease, not stress-ng's default one-day
#: timeout, decides how long it lasts; a file stressor (``--hdd`` in options) writes under /tmp,
#: never into the agent's working directory.
BASE_OPTIONS = ("--timeout", "0", "--temp-path", "/tmp")

_NODE_FILES = "names a file on the node"
_NODE_WIDE = "acts on the whole node, not only the container"
#: Long options refused in raw arguments, with why.
REFUSED_OPTIONS: dict[str, str] = {
    "log-file": _NODE_FILES,
    "job": _NODE_FILES,
    "yaml": _NODE_FILES,
    "temp-path": _NODE_FILES,
    "dev-file": _NODE_FILES,
    "keep-files": "leaves stress-ng's files on the node after recovery",
    "sched": "sets a scheduling policy that can take CPU past the container's limits",
    "sched-prio": "sets a scheduling priority that can take CPU past the container's limits",
    "sched-period": "tunes deadline scheduling, which can take CPU past the container's limits",
    "sched-runtime": "tunes deadline scheduling, which can take CPU past the container's limits",
    "sched-deadline": "tunes deadline scheduling, which can take CPU past the container's limits",
    "sched-reclaim": "tunes deadline scheduling, which can take CPU past the container's limits",
    "ionice-class": "sets an I/O class that competes with the whole node",
    "ionice-level": "sets an I/O priority that competes with the whole node",
    "ignite-cpu": "changes the node's CPU frequency settings",
    "pathological": "enables stressors known to hang the whole node",
    "cpu-online": "takes the node's CPUs offline",
    "cpu-online-all": "takes the node's CPUs offline",
    "swap": "adds swap space to the whole node",
    "reboot": "reboots",
    "dev": "exercises the node's device files",
    "rawdev": "reads the node's raw block devices",
}
#: Short options refused (``-j`` = ``--job``, ``-Y`` = ``--yaml``).
REFUSED_SHORT: dict[str, str] = {"j": "job", "Y": "yaml"}
#: Short options of stress-ng 0.15 that take a value (the rest of a bundle is that value).
_SHORT_WITH_VALUE = frozenset("abBcCdDfFijlmopPrRsStTuxyY")
#: Real options that are prefixes of refused ones: getopt takes them as themselves, not abbreviations.
_EXACT_PREFIXES = frozenset({"cpu", "io"})


def refused_option(token: str) -> str | None:
    """Why a raw stress-ng argument is refused, or None when it is allowed.

    getopt_long accepts unambiguous abbreviations (``--log-f``), so an abbreviation of a refused
    option is refused too; short options may be bundled (``-kY file``).
    """
    if token.startswith("--") and len(token) > 2:
        name = token[2:].split("=", 1)[0]
        reason = REFUSED_OPTIONS.get(name)
        if reason is not None:
            return f"--{name} {reason}"
        if name not in _EXACT_PREFIXES:
            for refused, why in REFUSED_OPTIONS.items():
                if refused.startswith(name):
                    return f"--{name} abbreviates --{refused}, which {why}"
        return None
    if token.startswith("-") and len(token) > 1 and token[1] != "-":
        for letter in token[1:]:
            if letter in REFUSED_SHORT:
                long_name = REFUSED_SHORT[letter]
                return f"-{letter} (--{long_name}) {REFUSED_OPTIONS[long_name]}"
            if letter in _SHORT_WITH_VALUE:
                break  # the rest of the token is this option's value
    return None


def split_arguments(text: str, path: str) -> list[str]:
    """Split a raw option string as a shell would (no shell runs); refuse what reaches past the container."""
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise PlanError(path, f"{text!r} cannot be split into arguments: {error}") from None
    for token in tokens:
        reason = refused_option(token)
        if reason is not None:
            raise PlanError(path, f"{token!r} is not allowed: {reason}")
    return tokens


def _options(options: Sequence[str] | None, path: str) -> list[str]:
    # Chaos Mesh splits each option on whitespace; shell-style splitting also honours quotes.
    tokens: list[str] = []
    for index, text in enumerate(options or ()):
        tokens += split_arguments(text, f"{path}[{index}]")
    return tokens


def _spawn_step(name: str, what: str, argv: Sequence[str]) -> Step:
    return Step(
        name=f"start {what}",
        apply=Spawn(argv=tuple(argv), name=name, namespaces=NAMESPACES, join_target_cgroup=True),
        undo=Reap(name, signal="SIGTERM"),
        probe=Probe(argv=(), expect="", process=name),
    )


def cpu_argv(cpu: CPUStressor, path: str = "spec.stressors.cpu") -> list[str]:
    argv = [STRESS_NG, *BASE_OPTIONS, "--cpu-load-slice", "10", "--cpu-method", "sqrt"]
    argv += ["--cpu", str(cpu.workers)]
    if cpu.load is not None:
        argv += ["--cpu-load", str(cpu.load)]
    return argv + _options(cpu.options, f"{path}.options")


def vm_bytes(size: str | None, path: str = "spec.stressors.memory.size") -> str:
    """The ``--vm-bytes`` value for a memory size: bytes with a ``b`` suffix, a percent, or all memory."""
    if not size:
        return "100%"
    try:
        parsed = parse_memory_size(size)
    except ValueError as error:
        raise PlanError(path, f'"{size}" is not a memory size: {error}') from None
    if parsed.amount <= 0:
        raise PlanError(path, f'"{size}" takes no memory; give a size above zero (e.g. "256MB", "10%")')
    return f"{parsed.amount}%" if parsed.is_percent else f"{parsed.amount}b"


def with_oom_score_adj(adjustment: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run with this oom_score_adj (inherited by every process it starts).

    Written through ``/proc/self``, which names the writer in the node's /proc even from inside the
    target's PID namespace; ``choom`` would use its namespaced PID there and adjust another process.
    """
    script = f'echo {int(adjustment)} > /proc/self/oom_score_adj && exec "$@"'
    return ["sh", "-c", script, "oom-score-adj", *argv]


def memory_argv(memory: MemoryStressor, path: str = "spec.stressors.memory") -> list[str]:
    size = vm_bytes(memory.size, f"{path}.size")
    argv = [STRESS_NG, *BASE_OPTIONS, "--no-oom-adjust", "--vm", str(memory.workers), "--vm-bytes", size]
    argv += ["--vm-hang", "0", *_options(memory.options, f"{path}.options")]
    return with_oom_score_adj(memory.oom_score_adj, argv)


def plan_stress(spec: StressChaosSpec, target: Target) -> Plan:
    """The stressors of ``spec`` as steps on ``target``: one stress-ng process per stressor."""
    steps: list[Step] = []
    raw = (spec.stressng_stressors or "").strip()
    if raw:
        arguments = split_arguments(raw, "spec.stressngStressors")
        argv = [STRESS_NG, *BASE_OPTIONS, *arguments]
        steps.append(_spawn_step("stress-ng", "stress-ng (stressngStressors)", argv))
    else:
        stressors = spec.stressors
        if stressors is None:
            raise PlanError("spec.stressors", "is required unless stressngStressors is given")
        # Chaos Mesh skips a stressor with no workers; the API refuses it, the planner stays lenient.
        if stressors.cpu is not None and stressors.cpu.workers > 0:
            what = f"{stressors.cpu.workers} CPU worker(s)"
            steps.append(_spawn_step("stress-cpu", what, cpu_argv(stressors.cpu)))
        if stressors.memory is not None and stressors.memory.workers > 0:
            steps.append(_spawn_step("stress-memory", f"{stressors.memory.workers} memory worker(s)",
                                     memory_argv(stressors.memory)))
        if not steps:
            raise PlanError("spec.stressors", "stresses nothing: give cpu or memory at least one worker")
    return Plan(kind="StressChaos", target=target, steps=tuple(steps))


def plan_stress_wire(spec: Mapping[str, Any], target: Target) -> Plan:
    """The agent's planner for StressChaos: the spec in wire form (camelCase JSON)."""
    return plan_stress(spec_from_wire(StressChaosSpec, spec), target)
