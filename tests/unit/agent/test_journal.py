"""The journal: codec round trips, torn tails, compaction, and the reducer's bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultmesh.agent.exec import Location, ProcessId, SpawnedProcess
from faultmesh.agent.journal import (
    Done,
    Failed,
    Journal,
    JournalError,
    LeaseRenewed,
    Record,
    Recovered,
    RecoverRequested,
    Registered,
    RunFinished,
    RunRecovered,
    RunStarted,
    StepApplied,
    StepFailed,
    StepIntent,
    UndoDone,
    UndoIntent,
    decode,
    dumps,
    encode,
    loads,
    replay,
)
from faultmesh.kinds.plan import Exec, KillContainer, KillProcess, Plan, Probe, Reap, Spawn, Step, Target

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
names = st.text("abcdefgh-/.", min_size=1, max_size=8)
argv = st.lists(text, min_size=1, max_size=4).map(tuple)
namespaces = st.lists(st.sampled_from(["net", "mnt", "pid", "uts", "ipc", "cgroup", "user"]), max_size=3,
                      unique=True).map(tuple)
json_scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | text | st.floats(allow_nan=False,
                                                                                          allow_infinity=False)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=8)
signals = st.sampled_from(["SIGKILL", "SIGTERM", "9"])

execs = st.builds(Exec, argv, namespaces, st.lists(text, max_size=2).map(tuple), st.none() | text)
actions = (execs | st.builds(Spawn, argv, names, namespaces, st.booleans()) | st.builds(Reap, names, signals)
           | st.builds(KillContainer, names, signals) | st.builds(KillProcess, signals))
probes = st.builds(Probe, argv, text, namespaces, st.lists(text, max_size=2).map(tuple), st.none() | names)
steps = st.builds(Step, names, actions, st.none() | actions, st.none() | probes)
targets = st.builds(Target, names.map(lambda n: f"containerd://{n}"), text,
                    st.dictionaries(text, json_values, max_size=3))
plans = st.builds(Plan, names, targets, st.lists(steps, max_size=4).map(tuple), st.booleans())
process_ids = st.builds(ProcessId, st.integers(1, 2**22), st.integers(0, 2**40))
spawned = st.builds(SpawnedProcess, st.integers(1, 2**22), st.integers(0, 2**40), st.integers(1, 2**22),
                    st.lists(process_ids, max_size=3).map(tuple), text, text)
locations = st.builds(Location, st.integers(1, 2**22),
                      st.dictionaries(st.sampled_from(["net", "mnt", "pid"]), st.integers(1, 2**40)))
times = st.floats(0, 4e9, allow_nan=False)
steps_index = st.integers(0, 10)

records = st.one_of(
    st.builds(Registered, names, names, st.dictionaries(text, json_values, max_size=3), targets, names,
              st.floats(0.1, 1e5), times, st.none() | names, times),
    st.builds(LeaseRenewed, names, times, times),
    st.builds(RunStarted, names, names, st.lists(names, max_size=3).map(tuple), plans, st.none() | locations, times),
    st.builds(StepIntent, names, steps_index, times),
    st.builds(StepApplied, names, steps_index, st.none() | spawned, times),
    st.builds(StepFailed, names, steps_index, text, times),
    st.builds(UndoIntent, names, steps_index, times),
    st.builds(UndoDone, names, steps_index, times),
    st.builds(RunRecovered, names, times),
    st.builds(RunFinished, names, times),
    st.builds(RecoverRequested, names, text, times),
    st.builds(Recovered, names, text, times),
    st.builds(Failed, names, text, times),
    st.builds(Done, names, text, times),
)


@given(plans)
def test_plans_round_trip_through_the_codec(plan: Plan) -> None:
    assert decode(json.loads(json.dumps(encode(plan)))) == plan


@given(records)
def test_every_record_round_trips_as_one_line(record: Record) -> None:
    line = dumps(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert loads(line) == record


def test_a_spec_with_a_field_named_like_the_tag_stays_plain_json() -> None:
    record = Registered("i", "NetworkChaos", {"t": {"t": "Plan"}}, Target("containerd://c", facts={"t": [1]}), "o",
                        10.0, 20.0)
    assert loads(dumps(record)) == record


@pytest.mark.parametrize(("line", "message"), [
    (b'{"t":"Nope"}', "unknown type 'Nope'"),
    (b'{"t":"StepIntent","run":"r","step":"1"}', "expected int"),
    (b'{"t":"StepIntent","run":"r","step":1,"extra":2}', "unknown fields"),
    (b'{"t":"Plan","kind":"k","target":{"t":"Target","container_id":"c"},"steps":[],"one_shot":false}',
     "not a journal record"),
])
def test_bad_records_are_refused_with_a_reason(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loads(line)


def _write(path: Path, recs: list[Record]) -> bytes:
    journal = Journal(path)
    journal.open()
    for record in recs:
        journal.append(record)
    journal.close()
    return path.read_bytes()


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=1, max_size=6), st.data())
def test_any_byte_prefix_reads_as_a_prefix_of_the_records(tmp_path_factory: pytest.TempPathFactory,
                                                           recs: list[Record], data: st.DataObject) -> None:
    directory = tmp_path_factory.mktemp("journal")
    full = _write(directory / "journal.jsonl", recs)
    cut = data.draw(st.integers(0, len(full)))
    path = directory / "torn.jsonl"
    path.write_bytes(full[:cut])
    whole_lines = full[:cut].count(b"\n")
    read = Journal(path).read()
    assert read == recs[:len(read)]
    assert whole_lines <= len(read) <= whole_lines + 1
    # Opening cuts the torn line off, so the next record starts on a line of its own.
    journal = Journal(path)
    assert journal.open() == read
    journal.append(Done("after-the-crash"))
    journal.close()
    assert Journal(path).read() == [*read, Done("after-the-crash")]


def test_zeros_after_a_power_loss_count_as_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, [Done("a"), Done("b")])
    with path.open("ab") as file:
        file.write(b"\0" * 64)
    assert Journal(path).read() == [Done("a"), Done("b")]


def test_damage_before_the_last_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, [Done("a"), Done("b"), Done("c")])
    lines = path.read_bytes().split(b"\n")
    lines[1] = b'{"t":"Done","id":'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=r"journal.jsonl:2: damaged record"):
        Journal(path).read()


def test_open_creates_the_directory_and_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "agent" / "journal.jsonl")
    assert journal.open() == []
    journal.append(Done("x"))
    assert journal.record_count == 1
    assert journal.size_bytes == len(dumps(Done("x")))
    journal.close()
    with pytest.raises(JournalError, match="not open"):
        journal.append(Done("y"))


def _plan(*names: str) -> Plan:
    return Plan("K", Target("containerd://c"), tuple(
        Step(name, Exec(("add", name)), Exec(("del", name)), Probe(("has", name), name)) for name in names))


def test_reducer_tracks_what_may_exist() -> None:
    state = replay([
        Registered("i", "K", {}, Target("containerd://c"), "o", 10.0, 100.0),
        RunStarted("r", "injection/i", ("i",), _plan("a", "b", "c")),
        StepIntent("r", 0), StepApplied("r", 0),
        StepIntent("r", 1), StepFailed("r", 1, "refused"),
        StepIntent("r", 2),
    ])
    run = state.runs["r"]
    assert run.touched() == [0, 2]
    assert run.possibly_present() == [0, 2]
    assert not run.complete
    state.apply(UndoIntent("r", 2))
    state.apply(UndoDone("r", 2))
    assert run.possibly_present() == [0]
    state.apply(RunRecovered("r"))
    assert state.live_runs() == []


def test_records_for_unknown_runs_or_injections_are_counted_not_fatal() -> None:
    state = replay([StepIntent("nope", 0), Recovered("nobody", "x"),
                    RunStarted("r", "g", (), _plan("a")), StepIntent("r", 5)])
    assert state.orphans == 3


def test_renewals_and_outcomes_update_the_injection() -> None:
    state = replay([Registered("i", "K", {}, Target("containerd://c"), "o", 10.0, 100.0),
                    LeaseRenewed("i", 150.0), RecoverRequested("i", "lease expired"),
                    RecoverRequested("i", "second reason is ignored")])
    injection = state.injections["i"]
    assert injection.lease_expires == 150.0
    assert injection.recover_reason == "lease expired"
    assert not injection.wanted
    state.apply(Recovered("i", "lease expired"))
    assert injection.outcome == "recovered"
    # Registering the id again starts afresh.
    state.apply(Registered("i", "K", {}, Target("containerd://c"), "o", 10.0, 300.0))
    assert state.injections["i"].wanted


@settings(max_examples=200)
@given(st.lists(records, max_size=25))
def test_compaction_keeps_exactly_what_is_unfinished(recs: list[Record]) -> None:
    state = replay(recs)
    snapshot = state.snapshot()
    state.prune()
    again = replay(snapshot)
    assert again.injections.keys() == state.injections.keys()
    for key, injection in state.injections.items():
        other = again.injections[key]
        assert (other.lease_expires, other.recover_reason, other.target, other.spec) == (
            injection.lease_expires, injection.recover_reason, injection.target, injection.spec)
    assert again.runs.keys() == state.runs.keys()
    for key, run in state.runs.items():
        twin = again.runs[key]
        assert (twin.intents, twin.applied, twin.failed, twin.undo_intents, twin.undone, twin.live) == (
            run.intents, run.applied, run.failed, run.undo_intents, run.undone, run.live)
    assert all(run.live for run in again.runs.values())
    assert all(injection.outcome is None for injection in again.injections.values())


def test_compaction_keeps_an_undo_begun_on_a_step_never_applied() -> None:
    plan = Plan("K", Target("containerd://a"), (Step("kill", KillProcess("SIGKILL"), None, None),))
    state = replay([RunStarted("r", "g", (), plan, None, 0.0), UndoIntent("r", 0, 0.0), UndoDone("r", 0, 0.0)])
    again = replay(state.snapshot())
    assert (again.runs["r"].undo_intents, again.runs["r"].undone) == ({0}, {0})


def test_compact_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.open()
    for index in range(5):
        journal.append(Done(f"d{index}"))
    journal.compact([Done("kept")])
    assert journal.record_count == 1
    journal.append(Done("after"))
    journal.close()
    assert Journal(path).read() == [Done("kept"), Done("after")]
    assert not path.with_name("journal.jsonl.compact").exists()
