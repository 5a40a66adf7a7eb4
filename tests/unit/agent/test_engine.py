"""Engine logic over a simulated node: apply/verify/rollback, recovery and retries, slots, halt, leases,
and the crash property: an agent killed after any event, then restarted, converges."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultmesh.agent.injections import (
    LEASE_EXPIRED,
    ApplyFailedError,
    ConflictError,
    Engine,
    EngineEvent,
    HaltChanged,
    HaltedError,
    InjectionRequest,
    LeaseExpired,
    NoPlannerError,
    PhaseChanged,
    UnknownInjectionError,
)
from faultmesh.agent.journal import (
    Done,
    RecoverRequested,
    Registered,
    RunStarted,
    StepApplied,
    StepFailed,
    StepIntent,
    UndoDone,
    UndoIntent,
    replay,
)
from faultmesh.agent.lease import LeaseError
from faultmesh.kinds.plan import Target

from .engine_world import Clock, Crash, Events, MemoryJournal, World, WorldExecutor, registry

TARGET = Target("containerd://app", "default/pod")


def items(injection_id: str, *names: str, ttl: float = 60.0, spawn: bool = False, owner: str = "ctl",
          target: Target = TARGET) -> InjectionRequest:
    return InjectionRequest(injection_id, "Items", {"items": list(names), "spawn": spawn}, target, owner, ttl)


def shared(injection_id: str, *names: str, slot: str = "net/app/eth0", ttl: float = 60.0) -> InjectionRequest:
    return InjectionRequest(injection_id, "Shared", {"items": list(names)}, TARGET, "ctl", ttl, slot)


class Node:
    """One simulated node: world, journal lines and clock survive an agent's death; the engine does not."""

    def __init__(self) -> None:
        self.world = World()
        self.clock = Clock()
        self.lines: list[bytes] = []
        self.engine: Engine | None = None

    def agent(self, crash_after: int | None = None, **options: Any) -> Engine:
        events = Events(crash_after)
        journal = MemoryJournal(self.lines, events)
        self.journal = journal
        options.setdefault("retry_initial", 0.01)
        options.setdefault("probe_interval", 0.0)
        self.engine = Engine(journal, WorldExecutor(self.world, events), registry(), wall=self.clock,
                             monotonic=self.clock, **options)
        return self.engine


def run(scenario: Callable[[Node], Awaitable[None]]) -> Node:
    node = Node()

    async def main() -> None:
        try:
            await scenario(node)
        finally:
            if node.engine is not None:
                await node.engine.close()

    asyncio.run(main())
    return node


# ----------------------------------------------------------------------------------------- apply


def test_apply_journals_each_step_before_it_and_verifies() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        view = await engine.apply(items("a", "x", "y"))
        assert view.phase == "injected"
        assert node.world.items == {"x", "y"}
        kinds = [type(record).__name__ for record in node.journal.read()]
        assert kinds == ["Registered", "RunStarted", "StepIntent", "StepApplied", "StepIntent", "StepApplied"]

    run(scenario)


def test_a_refused_step_rolls_back_what_was_done_but_not_itself() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        node.world.items.add("taken")  # somebody else's object: the apply is refused and must not undo it
        with pytest.raises(ApplyFailedError, match=r"step 2 \(taken\).*refused"):
            await engine.apply(items("a", "x", "taken", "z"))
        assert node.world.items == {"taken"}
        view = engine.get("a")
        assert view.phase == "failed" and "refused" in view.reason
        records = node.journal.read()
        assert any(isinstance(r, StepFailed) and r.step == 1 for r in records)
        assert [r.step for r in records if isinstance(r, UndoIntent)] == [0]

    run(scenario)


def test_a_step_that_does_not_show_up_in_its_probe_fails_the_apply() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        node.world.missing_after_add.add("ghost")
        with pytest.raises(ApplyFailedError, match="not in effect after apply: ghost: absent"):
            await engine.apply(items("a", "x", "ghost"))
        assert node.world.items == set()
        assert engine.get("a").phase == "failed"

    run(scenario)


def test_a_target_that_is_gone_fails_before_anything_runs() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        node.world.gone_targets.add("containerd://vanished")
        with pytest.raises(ApplyFailedError, match="no such container"):
            await engine.apply(items("a", "x", target=Target("containerd://vanished")))
        assert not any(isinstance(r, RunStarted) for r in node.journal.read())
        assert engine.get("a").phase == "failed"

    run(scenario)


def test_applying_the_same_request_twice_is_idempotent_and_renews() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        first = await engine.apply(items("a", "x", ttl=10))
        node.clock.now += 5
        again = await engine.apply(items("a", "x", ttl=10))
        assert again.phase == "injected"
        assert again.lease_expires == first.lease_expires + 5
        assert node.world.items == {"x"}
        with pytest.raises(ConflictError, match="another kind, spec"):
            await engine.apply(items("a", "other"))

    run(scenario)


def test_a_kind_without_a_planner_is_refused() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        with pytest.raises(NoPlannerError, match="kind Nope has no planner"):
            await engine.apply(InjectionRequest("a", "Nope", {}, TARGET, "ctl", 10))
        with pytest.raises(NoPlannerError, match="no slot planner"):
            await engine.apply(InjectionRequest("a", "Items", {"items": []}, TARGET, "ctl", 10, "some-slot"))

    run(scenario)


def test_one_shot_faults_are_done_and_never_repeated() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        view = await engine.apply(InjectionRequest("k", "Kill", {}, TARGET, "ctl", 10))
        assert view.phase == "done"
        assert node.world.kills == ["containerd://app"]
        await engine.close()
        await node.agent().start()
        assert node.world.kills == ["containerd://app"]

    run(scenario)


# ----------------------------------------------------------------------------------------- recover


def test_recover_undoes_in_reverse_and_verifies() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x", "y", spawn=True))
        assert len(node.world.items) == 3
        view = await engine.recover("a", "experiment deleted")
        assert view.phase == "recovered" and view.reason == "experiment deleted"
        assert node.world.items == set()
        undo_order = [r.step for r in node.journal.read() if isinstance(r, UndoDone)]
        assert undo_order == [2, 1, 0]
        assert (await engine.recover("a", "again")).reason == "experiment deleted"
        with pytest.raises(UnknownInjectionError):
            await engine.recover("nobody")

    run(scenario)


def test_a_failing_undo_is_reported_and_retried_until_verified() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x", "y"))
        node.world.stuck.add("y")
        view = await engine.recover("a", "done")
        assert view.phase == "recovering"
        assert "device busy" in view.last_error
        assert "y" in node.world.items
        await asyncio.sleep(0.05)
        assert engine.get("a").phase == "recovering"  # still failing: still retried, not dropped
        node.world.stuck.clear()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if engine.get("a").phase == "recovered":
                break
        assert engine.get("a").phase == "recovered"
        assert engine.get("a").last_error == ""
        assert node.world.items == set()

    run(scenario)


def test_a_probe_that_still_sees_the_change_keeps_recovery_open() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x"))
        node.world.stuck.add("x")
        await engine.recover("a", "done")
        node.world.stuck.clear()
        node.world.items.add("x")  # undo "worked" but the kernel still holds it: not recovered
        engine._retries["injection/a"].cancel()
        view = await engine.recover("a", "done")
        assert view.phase == "recovered"  # a fresh attempt deletes it and verifies

    run(scenario)


# ----------------------------------------------------------------------------------------- slots


def test_slot_members_combine_and_leaving_keeps_the_others() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(shared("one", "delay"))
        await engine.apply(shared("two", "loss"))
        assert node.world.items == {"delay", "loss"}
        runs = [r for r in node.journal.read() if isinstance(r, RunStarted)]
        assert [r.members for r in runs] == [("one",), ("one", "two")]
        assert (await engine.recover("one")).phase == "recovered"
        assert node.world.items == {"loss"}
        assert engine.get("two").phase == "injected"
        await engine.recover("two")
        assert node.world.items == set()

    run(scenario)


def test_a_newcomer_that_breaks_the_slot_fails_alone() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(shared("one", "delay"))
        node.world.refuse.add("bad")
        with pytest.raises(ApplyFailedError, match="refused"):
            await engine.apply(shared("two", "bad"))
        assert engine.get("two").phase == "failed"
        assert engine.get("one").phase == "injected"
        assert node.world.items == {"delay"}

    run(scenario)


def test_a_slot_holds_one_kind_on_one_target() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(shared("one", "delay"))
        other = InjectionRequest("two", "Shared", {"items": ["x"]}, Target("containerd://other"), "ctl", 10,
                                 "net/app/eth0")
        with pytest.raises(ConflictError, match="slot 'net/app/eth0' holds Shared on containerd://app"):
            await engine.apply(other)

    run(scenario)


# ----------------------------------------------------------------------------------------- halt, leases


def test_halt_recovers_everything_and_refuses_until_released() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x"))
        await engine.apply(shared("s1", "y"))
        await engine.apply(shared("s2", "z"))
        views = await engine.halt("operator pressed the button")
        assert {v.id: v.phase for v in views} == {"a": "recovered", "s1": "recovered", "s2": "recovered"}
        assert node.world.items == set()
        with pytest.raises(HaltedError, match="operator pressed the button"):
            await engine.apply(items("b", "w"))
        engine.release()
        assert (await engine.apply(items("b", "w"))).phase == "injected"

    run(scenario)


def test_renewals_belong_to_the_owner() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x", ttl=10))
        await engine.apply(items("b", "y", ttl=10, owner="other"))
        node.clock.now += 8
        assert await engine.renew("a", "ctl", 30) == node.clock.now + 30
        with pytest.raises(LeaseError, match="owned by 'ctl'"):
            await engine.renew("a", "other")
        assert await engine.renew_owner("other") == {"b": node.clock.now + 10}
        await engine.recover("a")
        with pytest.raises(LeaseError, match="no lease"):
            await engine.renew("a", "ctl")

    run(scenario)


def test_an_expired_lease_recovers_by_itself() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x", ttl=10))
        node.clock.now += 10
        engine.leases.changed.set()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if engine.get("a").phase == "recovered":
                break
        view = engine.get("a")
        assert (view.phase, view.reason) == ("recovered", LEASE_EXPIRED)
        assert node.world.items == set()

    run(scenario)


def test_the_journal_is_compacted_as_injections_finish() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent(compact_threshold=20)
        await engine.start()
        await engine.apply(items("keep", "k"))
        for index in range(30):
            await engine.apply(items(f"t{index}", f"x{index}"))
            await engine.recover(f"t{index}")
        assert node.journal.record_count < 40
        state = replay(node.journal.read())
        assert list(state.injections) == ["keep"]
        assert engine.get("t29").phase == "recovered"  # finished ones are still listed for a while

    run(scenario)


# ----------------------------------------------------------------------------------------- restart


def test_compaction_ages_out_the_oldest_finished_injection_not_the_newest() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent(keep_finished=1, compact_threshold=4)
        await engine.start()
        await engine.apply(items("old", "o"))
        await engine.apply(items("new", "n"))
        await engine.recover("new")
        view = await engine.recover("old")  # it just finished: it is the one kept
        assert (view.id, view.phase) == ("old", "recovered")
        assert [v.id for v in engine.list()] == ["old"]

    run(scenario)


def test_restart_reapplies_a_wanted_injection_whose_changes_vanished() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x", "y"))
        await engine.close()
        node.world.items.discard("y")  # e.g. the container restarted and lost its tc rules
        engine = node.agent()
        await engine.start()
        assert node.world.items == {"x", "y"}
        assert engine.get("a").phase == "injected"

    run(scenario)


def test_restart_keeps_what_still_holds_without_touching_it() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x"))
        await engine.close()
        engine = node.agent()
        executor = engine.executor
        await engine.start()
        assert isinstance(executor, WorldExecutor) and executor.calls == []
        assert engine.get("a").phase == "injected"

    run(scenario)


def test_restart_after_the_lease_ran_out_recovers() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(items("a", "x", ttl=10))
        await engine.close()
        node.clock.now += 11
        engine = node.agent()
        await engine.start()
        view = engine.get("a")
        assert (view.phase, view.reason) == ("recovered", LEASE_EXPIRED)
        assert node.world.items == set()

    run(scenario)


# ----------------------------------------------------------------------------------------- views and observers


def test_verified_only_once_the_probes_read_the_phase_back() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        during_probes: list[tuple[str, bool]] = []

        def watch() -> None:
            view = engine.get("a")
            during_probes.append((view.phase, view.verified))

        executor = engine.executor
        assert isinstance(executor, WorldExecutor)
        executor.before_probe = watch
        applied = await engine.apply(items("a", "x"))
        # Every step ran, so a List says injected -- but nothing has been read back yet.
        assert during_probes[0] == ("injected", False)
        assert (applied.phase, applied.verified) == ("injected", True)

        node.world.stuck.add("x")
        recovering = await engine.recover("a", "done")
        assert (recovering.phase, recovering.verified) == ("recovering", False)
        node.world.stuck.clear()
        engine._retries["injection/a"].cancel()
        recovered = await engine.recover("a", "done")
        assert (recovered.phase, recovered.verified) == ("recovered", True)

        node.world.refuse.add("bad")
        with pytest.raises(ApplyFailedError):
            await engine.apply(items("f", "ok", "bad"))
        assert (engine.get("f").phase, engine.get("f").verified) == ("failed", True)  # rolled back, verified gone
        done = await engine.apply(InjectionRequest("k", "Kill", {}, TARGET, "ctl", 10))
        assert (done.phase, done.verified) == ("done", False)  # nothing to read back

        await engine.apply(items("b", "y"))
        await engine.close()
        restarted = node.agent()
        await restarted.start()  # the probes said the run still holds: verified again in this process
        assert (restarted.get("b").phase, restarted.get("b").verified) == ("injected", True)

    run(scenario)


def test_a_slot_member_is_unverified_while_its_slot_is_rebuilt() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        await engine.apply(shared("one", "delay"))
        seen: list[tuple[str, bool]] = []

        def watch() -> None:
            view = engine.get("one")
            seen.append((view.phase, view.verified))

        executor = engine.executor
        assert isinstance(executor, WorldExecutor)
        executor.before_probe = watch
        await engine.apply(shared("two", "loss"))
        # Probes of the old run (absent), then of the new one (present): never verified in between.
        assert ("injected", True) not in seen
        assert ("injected", False) in seen
        assert (engine.get("one").phase, engine.get("one").verified) == ("injected", True)

    run(scenario)


def test_observers_hear_every_phase_change_lease_expiry_and_halt() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent()
        await engine.start()
        events: list[EngineEvent] = []

        def broken(event: EngineEvent) -> None:
            raise RuntimeError("an observer with a bug")

        engine.add_observer(broken)  # logged, never passed on to the engine
        engine.add_observer(events.append)
        await engine.apply(items("a", "x", ttl=10))
        assert events == [PhaseChanged("a", "Items", None, "injecting"), PhaseChanged("a", "Items", "injecting",
                                                                                       "injected")]
        events.clear()
        node.clock.now += 10
        engine.leases.changed.set()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if engine.get("a").phase == "recovered":
                break
        assert events == [PhaseChanged("a", "Items", "injected", "recovering"), LeaseExpired("a", "Items"),
                          PhaseChanged("a", "Items", "recovering", "recovered")]
        events.clear()

        await engine.apply(shared("one", "delay"))
        await engine.apply(shared("two", "loss"))
        one = [(e.previous, e.phase) for e in events if isinstance(e, PhaseChanged) and e.id == "one"]
        # The slot is rebuilt for the newcomer: the old run is recovered before the combined one holds.
        assert one == [(None, "injecting"), ("injecting", "injected"), ("injected", "injecting"),
                       ("injecting", "injected")]
        events.clear()
        engine.remove_observer(broken)
        await engine.halt("maintenance")
        engine.release()
        assert events[0] == HaltChanged("maintenance") and events[-1] == HaltChanged(None)
        assert {(e.id, e.phase) for e in events if isinstance(e, PhaseChanged)} >= {("one", "recovered"),
                                                                                   ("two", "recovered")}

    run(scenario)


def test_observers_hear_when_a_finished_injection_is_forgotten() -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent(keep_finished=1, compact_threshold=1)
        await engine.start()
        events: list[EngineEvent] = []
        engine.add_observer(events.append)
        for name in ("a", "b"):
            await engine.apply(items(name, f"{name}1"))
            await engine.recover(name)
        assert PhaseChanged("a", "Items", "recovered", None) in events
        assert [view.id for view in engine.list()] == ["b"]

    run(scenario)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["apply", "apply-slot", "recover", "refuse", "halt"]), st.integers(0, 3)),
                min_size=1, max_size=12),
       st.integers(1, 3))
def test_phases_told_to_observers_are_the_phases_the_engine_lists(ops: list[tuple[str, int]], keep: int) -> None:
    """Folding the events gives exactly what list() shows, at every point: no change goes unannounced."""
    async def scenario(node: Node) -> None:
        engine = node.agent(keep_finished=keep, compact_threshold=4)
        await engine.start()
        told: dict[str, str] = {}

        def fold(event: EngineEvent) -> None:
            if isinstance(event, PhaseChanged):
                assert told.get(event.id) == event.previous, event
                if event.phase is None:
                    del told[event.id]
                else:
                    told[event.id] = event.phase

        engine.add_observer(fold)
        for number, (op, key) in enumerate(ops):
            try:
                if op == "apply":
                    await engine.apply(items(f"i{key}", f"i{key}-x{number}", spawn=key % 2 == 0))
                elif op == "apply-slot":
                    await engine.apply(shared(f"s{key}", f"s{key}-x{number}"))
                elif op == "refuse":
                    node.world.refuse.add(f"bad{number}")
                    await engine.apply(items(f"i{key}", f"ok{number}", f"bad{number}"))
                elif op == "halt":
                    await engine.halt("halt")
                    engine.release()
                else:
                    for injection_id in (f"i{key}", f"s{key}"):
                        if injection_id in engine.state.injections:
                            await engine.recover(injection_id)
            except (ApplyFailedError, ConflictError):
                pass
            assert told == {view.id: view.phase for view in engine.list()}

    run(scenario)


# ----------------------------------------------------------------------------------------- crash property

Step = Callable[[Engine, Node], Awaitable[Any]]


def _script() -> list[Step]:
    """A day in the life of an agent: solo and slot injections come and go, one lease runs out."""

    async def expire(engine: Engine, node: Node) -> None:
        await engine.recover("c", LEASE_EXPIRED)

    return [
        lambda e, n: e.apply(items("a", "a1", "a2", spawn=True, ttl=100)),
        lambda e, n: e.apply(shared("b", "b1", ttl=100)),
        lambda e, n: e.apply(shared("c", "c1", "c2", ttl=50)),
        lambda e, n: e.apply(items("d", "d1", ttl=100)),
        lambda e, n: e.recover("a", "deleted"),
        expire,
        lambda e, n: e.apply(InjectionRequest("k", "Kill", {}, TARGET, "ctl", 100)),
        lambda e, n: e.recover("b", "deleted"),
    ]


def _expected(engine: Engine) -> set[str]:
    """What the wanted injections' plans should hold, by the restarted engine's own journal."""
    expected: set[str] = set()
    for injection in engine.state.injections.values():
        if not injection.wanted:
            continue
        for item in injection.spec["items"]:
            expected.add(item)
        if injection.spec.get("spawn"):
            expected.add(f"proc:{injection.group}#worker")
    return expected


def _crash_then_restart(crash_after: int, lease_left: bool) -> tuple[bool, Node]:
    crashed = False

    async def scenario(node: Node) -> None:
        nonlocal crashed
        engine = node.agent(crash_after)
        try:
            await engine.start()
            for step in _script():
                await step(engine, node)
        except Crash:
            crashed = True
        except (ApplyFailedError, ConflictError):
            pass
        await engine.close()  # what the kernel does for a killed process: nothing of the engine remains
        if not lease_left:
            node.clock.now += 1000
        restarted = node.agent()
        await restarted.start()
        assert node.world.normalized() == _expected(restarted), (crash_after, lease_left)
        state = restarted.state
        for run_state in state.live_runs():
            assert run_state.members and all(state.injections[m].wanted for m in run_state.members)
        if not lease_left:
            assert node.world.items == set()
            assert all(view.phase in ("recovered", "failed", "done") for view in restarted.list())
        assert len(node.world.kills) <= 1  # a kill cut short is never repeated

    node = run(scenario)
    return crashed, node


def _crash_points() -> Iterator[int]:
    k = 1
    while True:
        yield k
        k += 1


@pytest.mark.parametrize("lease_left", [True, False], ids=["lease-valid", "lease-expired"])
def test_a_crash_after_any_event_converges_after_restart(lease_left: bool) -> None:
    tested = 0
    for crash_after in _crash_points():
        crashed, _ = _crash_then_restart(crash_after, lease_left)
        if not crashed:
            break
        tested += 1
    assert tested > 40  # every journal write and every action of the script was a crash point


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["apply", "apply-slot", "recover", "expire", "refuse"]),
                          st.integers(0, 3)), min_size=1, max_size=8),
       st.integers(1, 80), st.booleans())
def test_random_histories_with_a_crash_converge(ops: list[tuple[str, int]], crash_after: int,
                                                lease_left: bool) -> None:
    async def scenario(node: Node) -> None:
        engine = node.agent(crash_after)
        try:
            await engine.start()
            for number, (op, key) in enumerate(ops):
                name = f"i{key}"
                try:
                    if op == "apply":
                        await engine.apply(items(name, f"{name}-x{number}", spawn=key % 2 == 0, ttl=100))
                    elif op == "apply-slot":
                        await engine.apply(shared(f"s{key}", f"s{key}-x{number}", ttl=100))
                    elif op == "refuse":
                        node.world.refuse.add(f"{name}-bad{number}")
                        await engine.apply(items(name, f"{name}-ok{number}", f"{name}-bad{number}", ttl=100))
                    elif op in ("recover", "expire"):
                        for injection_id in (name, f"s{key}"):
                            if injection_id in engine.state.injections:
                                await engine.recover(injection_id, LEASE_EXPIRED if op == "expire" else "x")
                except (ApplyFailedError, ConflictError):
                    pass
        except Crash:
            pass
        await engine.close()
        node.world.refuse.clear()
        if not lease_left:
            node.clock.now += 1000
        restarted = node.agent()
        await restarted.start()
        assert node.world.normalized() == _expected(restarted)
        if not lease_left:
            assert node.world.items == set()

    run(scenario)


def test_journal_names_every_change_before_it_is_made() -> None:
    """At every moment, each item in the world is covered by a possibly-present step of a live run."""
    node = Node()

    async def scenario() -> None:
        engine = node.agent()
        executor = engine.executor
        assert isinstance(executor, WorldExecutor)
        original = executor._run

        def checked(action: Any, target: Any, scope: Any) -> Any:
            result = original(action, target, scope)
            state = replay(node.journal.read())
            covered = set()
            for live in state.live_runs():
                for index in live.possibly_present():
                    step = live.plan.steps[index]
                    if step.probe is not None and step.probe.process is None:
                        covered.add(step.probe.argv[1])
                    elif step.probe is not None:
                        covered.add(f"proc:{live.run}#{step.probe.process}")
            assert node.world.items <= covered, (action, node.world.items - covered)
            return result

        executor._run = checked  # type: ignore[method-assign]
        await engine.start()
        for step in _script():
            await step(engine, node)
        await engine.close()

    asyncio.run(scenario())
    assert any(isinstance(r, Registered) for r in node.journal.read()) or node.journal.record_count == 0


def test_records_of_a_run_follow_the_protocol() -> None:
    node = run(_run_script)
    records = node.journal.read()
    seen_intent: set[tuple[str, int]] = set()
    for record in records:
        if isinstance(record, StepIntent):
            seen_intent.add((record.run, record.step))
        if isinstance(record, StepApplied | StepFailed | UndoIntent):
            assert (record.run, record.step) in seen_intent
    assert any(isinstance(r, Done) for r in records)
    assert any(isinstance(r, RecoverRequested) and r.reason == LEASE_EXPIRED for r in records)


async def _run_script(node: Node) -> None:
    engine = node.agent()
    await engine.start()
    for step in _script():
        await step(engine, node)


def test_every_prefix_of_a_journal_replays_to_a_consistent_state() -> None:
    node = run(_run_script)
    records = node.journal.read()
    assert len(records) > 40
    for length in range(len(records) + 1):
        state = replay(records[:length])
        assert state.orphans == 0, length
        for run_state in state.runs.values():
            steps = range(len(run_state.plan.steps))
            assert set(run_state.applied) <= set(run_state.intents), length
            assert set(run_state.failed) <= set(run_state.intents), length
            assert not set(run_state.applied) & set(run_state.failed), length
            assert run_state.undone <= run_state.undo_intents <= set(run_state.touched()), length
            assert set(run_state.intents) <= set(steps), length
            assert not (run_state.recovered and run_state.finished), length
            for member in run_state.members:
                assert member in state.injections, length
        for injection in state.injections.values():
            if injection.outcome == "recovered":
                # Verified gone: no live run of its group still counts it as a member.
                assert all(injection.id not in r.members for r in state.live_runs(injection.group)), length


def test_the_agent_ships_planners_for_every_built_in_kind() -> None:
    from faultmesh.agent.planners import builtin_planners
    from faultmesh.kinds.network import PARTITION_KIND, TRAFFIC_CONTROL_KIND

    registry = builtin_planners()
    assert {"StressChaos", "PodChaos", PARTITION_KIND} <= set(registry.planners)
    assert TRAFFIC_CONTROL_KIND in registry.slot_planners
