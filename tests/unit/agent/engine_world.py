"""A simulated node for engine logic tests: an executor over a set of items, and an in-memory journal.

Actions: ``Exec(("add", x))`` creates item x (refused when it exists or when x is marked refused),
``Exec(("del", x))`` removes it (tolerant; fails while x is marked stuck), ``Probe(("has", x), x)``
reads it back; a Spawn creates ``proc:<tag>#<name>`` and Reap removes it. Every mutation and every
journal append counts as an *event*; a test can make the simulated agent die (``Crash``) right
after event k, which is what ``kill -9`` does to the real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from faultmesh.agent.exec import (
    ExecError,
    Executor,
    Location,
    ProbeResult,
    Scope,
    SpawnedProcess,
    TargetGoneError,
)
from faultmesh.agent.injections import PlannerRegistry
from faultmesh.agent.journal import Journal, Record, dumps, loads
from faultmesh.kinds.plan import Action, Exec, KillProcess, Plan, Probe, Reap, Spawn, Step, Target


class Crash(BaseException):
    """The simulated agent died here (nothing after this point runs)."""


class Events:
    """Counts events; raises Crash right after event number ``crash_after`` (1-based)."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.count = 0
        self.crash_after = crash_after

    @property
    def dead(self) -> bool:
        return self.crash_after is not None and self.count >= self.crash_after

    def check(self) -> None:
        """Before any effect: a dead agent does nothing more (not even its background tasks)."""
        if self.dead:
            raise Crash(self.count)

    def tick(self) -> None:
        self.count += 1
        self.check()


class World:
    def __init__(self) -> None:
        self.items: set[str] = set()
        self.refuse: set[str] = set()
        self.stuck: set[str] = set()
        self.missing_after_add: set[str] = set()
        self.kills: list[str] = []
        self.gone_targets: set[str] = set()

    def normalized(self) -> set[str]:
        """Items with the per-run token of spawned processes taken out (``proc:<group>#name``)."""
        return {re.sub(r"@[0-9a-f]+#", "#", item) for item in self.items}


class WorldExecutor(Executor):
    def __init__(self, world: World, events: Events) -> None:
        super().__init__()
        self.world = world
        self.events = events
        self.calls: list[str] = []
        #: Called before each probe (a test looks at the engine while it verifies).
        self.before_probe: Callable[[], None] | None = None

    async def locate(self, target: Target) -> Location:
        if target.container_id in self.world.gone_targets:
            raise TargetGoneError(target.container_id, "no such container")
        return Location(1, {"net": 4026531840})

    async def run(self, action: Action, target: Target, scope: Scope) -> SpawnedProcess | None:
        self.events.check()
        self.calls.append(action.describe())
        result = self._run(action, target, scope)
        self.events.tick()
        return result

    def _run(self, action: Action, target: Target, scope: Scope) -> SpawnedProcess | None:
        world = self.world
        if isinstance(action, Exec):
            verb, *rest = action.argv
            item = rest[0] if rest else ""
            if verb == "add":
                if item in world.refuse or item in world.items:
                    raise ExecError(action.describe(), "exit 2: refused")
                if item not in world.missing_after_add:
                    world.items.add(item)
            elif verb == "del":
                if item in world.stuck:
                    raise ExecError(action.describe(), "exit 1: device busy")
                world.items.discard(item)
            return None
        if isinstance(action, Spawn):
            tag = f"{scope.tag}#{action.name}"
            world.items.add(f"proc:{tag}")
            spawned = SpawnedProcess(4242, 1, 4242, (), "boot", tag)
            scope.processes[action.name] = spawned
            return spawned
        if isinstance(action, Reap):
            world.items.discard(f"proc:{scope.tag}#{action.name}")
            return None
        if isinstance(action, KillProcess):
            world.kills.append(target.container_id)
            return None
        raise AssertionError(f"unexpected action {action}")

    async def probe(self, probe: Probe, target: Target, scope: Scope) -> ProbeResult:
        self.events.check()
        if self.before_probe is not None:
            self.before_probe()
        if probe.process is not None:
            alive = f"proc:{scope.tag}#{probe.process}" in self.world.items
            return ProbeResult("present" if alive else "absent")
        return ProbeResult("present" if probe.argv[1] in self.world.items else "absent")


class MemoryJournal(Journal):
    """The journal's interface over a list of lines (each through the real codec); counts events."""

    def __init__(self, lines: list[bytes] | None = None, events: Events | None = None) -> None:
        super().__init__(Path("/nonexistent/memory-journal.jsonl"))
        #: Shared with the test's node: what a dead agent wrote is what the next one reads.
        self.lines = lines if lines is not None else []
        self.events = events

    def open(self) -> list[Record]:
        self.record_count = len(self.lines)
        return self.read()

    def read(self) -> list[Record]:
        return [loads(line) for line in self.lines]

    def append(self, record: Record) -> None:
        if self.events is not None:
            self.events.check()
        self.lines.append(dumps(record))
        self.record_count += 1
        if self.events is not None:
            self.events.tick()

    def compact(self, records: Sequence[Record]) -> None:  # type: ignore[override]
        if self.events is not None:
            self.events.check()
        self.lines[:] = [dumps(record) for record in records]
        self.record_count = len(self.lines)

    @property
    def size_bytes(self) -> int:
        return sum(len(line) for line in self.lines)

    def close(self) -> None:
        pass


def item_step(item: str) -> Step:
    return Step(item, Exec(("add", item)), Exec(("del", item)), Probe(("has", item), item))


def solo_planner(spec: Mapping[str, Any], target: Target) -> Plan:
    """Kind "Items": one step per item in spec["items"], plus a spawned process when spec["spawn"]."""
    steps = [item_step(item) for item in spec["items"]]
    if spec.get("spawn"):
        steps.append(Step("worker", Spawn(("sleep", "1000"), "worker"), Reap("worker"),
                          Probe((), "", process="worker")))
    return Plan("Items", target, tuple(steps))


def slot_planner(members: Sequence[tuple[str, Mapping[str, Any]]], target: Target) -> Plan:
    """Kind "Shared": every member's items in one plan (the way tc faults on one device combine)."""
    steps = [item_step(item) for _, spec in members for item in spec["items"]]
    if not steps:
        raise ValueError("spec.items: at least one item")
    return Plan("Shared", target, tuple(steps))


def kill_planner(spec: Mapping[str, Any], target: Target) -> Plan:
    return Plan("Kill", target, (Step("kill", KillProcess()),), one_shot=True)


def registry() -> PlannerRegistry:
    planners = PlannerRegistry()
    planners.register("Items", solo_planner)
    planners.register("Kill", kill_planner)
    planners.register_slot("Shared", slot_planner)
    return planners


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Tick = Callable[[], None]
