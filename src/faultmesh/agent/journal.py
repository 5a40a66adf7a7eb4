"""The journal: an append-only, fsynced JSON-lines file naming every change the agent may have made.

Each line is one record (a dataclass below, tagged by its class name under ``"t"``). A record is
written with one ``write`` and fsynced before the change it announces is made, so a crash at any
point leaves a journal that names everything that may exist. :func:`replay` folds records into a
:class:`JournalState`; the engine applies the very same reducer to each record it appends, so its
memory and a replay after a crash never disagree. The format and the crash windows are described
in ``docs/design/journal.md``.

The codec (:func:`encode` / :func:`decode`) round-trips the plan vocabulary (``kinds.plan``) and the
facts learned while applying (``agent.exec``: location, spawned processes); values in ``Target.facts``
and fault specs must be JSON values (tuples come back as lists there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from faultmesh.agent import exec as executor_facts
from faultmesh.kinds import plan as plan_vocabulary
from faultmesh.kinds.plan import Plan, Target

TAG = "t"


class JournalError(RuntimeError):
    """The journal cannot be read or written; the message names the file and the line."""


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Registered:
    """An injection was asked for (or asked for again after it ended)."""

    id: str
    kind: str
    spec: Mapping[str, Any]
    target: Target
    owner: str
    lease_ttl: float
    #: Wall-clock expiry (seconds since the epoch): it must survive a restart.
    lease_expires: float
    slot: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class LeaseRenewed:
    id: str
    lease_expires: float
    at: float = 0.0


@dataclass(frozen=True)
class RunStarted:
    """A plan is about to be applied; it carries every step's undo, so it precedes any change."""

    run: str
    #: ``injection/<id>`` for a plan of its own, ``slot/<key>`` for a slot's combined plan.
    group: str
    members: tuple[str, ...]
    plan: Plan
    location: executor_facts.Location | None = None
    at: float = 0.0


@dataclass(frozen=True)
class StepIntent:
    """Step ``step`` of ``run`` is about to be applied: from here on it may exist."""

    run: str
    step: int
    at: float = 0.0


@dataclass(frozen=True)
class StepApplied:
    run: str
    step: int
    #: For a Spawn: what was started (PIDs with start times), so it is reaped even after a restart.
    spawned: executor_facts.SpawnedProcess | None = None
    at: float = 0.0


@dataclass(frozen=True)
class StepFailed:
    """The step's command ran and refused (non-zero exit): it changed nothing, so it is not undone.

    Undoing it could remove what someone else made (``ip link add`` fails because the device
    exists). Commands of a plan are therefore each atomic; a timeout is not a refusal.
    """

    run: str
    step: int
    error: str
    at: float = 0.0


@dataclass(frozen=True)
class UndoIntent:
    run: str
    step: int
    at: float = 0.0


@dataclass(frozen=True)
class UndoDone:
    run: str
    step: int
    at: float = 0.0


@dataclass(frozen=True)
class RunRecovered:
    """Every undo of ``run`` ran and every probe said absent: verified gone."""

    run: str
    at: float = 0.0


@dataclass(frozen=True)
class RunFinished:
    """A one-shot run (a kill) went through; there is nothing to undo."""

    run: str
    at: float = 0.0


@dataclass(frozen=True)
class RecoverRequested:
    """The injection is no longer wanted (owner's request, lease expired, halt): recover it."""

    id: str
    reason: str
    at: float = 0.0


@dataclass(frozen=True)
class Recovered:
    """The injection's changes are verified gone."""

    id: str
    reason: str
    at: float = 0.0


@dataclass(frozen=True)
class Failed:
    """Applying failed; whatever had been done was rolled back and verified gone."""

    id: str
    error: str
    at: float = 0.0


@dataclass(frozen=True)
class Done:
    """A one-shot injection ran (or will not be repeated); nothing remains to recover."""

    id: str
    note: str = ""
    at: float = 0.0


Record = (Registered | LeaseRenewed | RunStarted | StepIntent | StepApplied | StepFailed | UndoIntent | UndoDone
          | RunRecovered | RunFinished | RecoverRequested | Recovered | Failed | Done)
RECORD_TYPES: tuple[type, ...] = typing.get_args(Record)


# ------------------------------------------------------------------------------------------ codec


def _dataclasses_of(module: types.ModuleType) -> dict[str, type]:
    return {name: value for name, value in vars(module).items()
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__}


#: Every type the codec knows, by tag: the whole plan vocabulary (so new actions need no change
#: here), the executor's facts, and the journal records.
CODEC_TYPES: dict[str, type] = {
    **_dataclasses_of(plan_vocabulary),
    **{name: cls for name, cls in _dataclasses_of(executor_facts).items()
       if name in ("Location", "ProcessId", "SpawnedProcess")},
    **{cls.__name__: cls for cls in RECORD_TYPES},
}
_HINTS: dict[type, dict[str, Any]] = {}


def encode(value: Any) -> Any:
    """A JSON value for a codec dataclass (tagged), a tuple/list, a mapping or a scalar."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if CODEC_TYPES.get(name) is not type(value):
            raise TypeError(f"{name} is not a journal codec type")
        out: dict[str, Any] = {TAG: name}
        for item in dataclasses.fields(value):
            out[item.name] = encode(getattr(value, item.name))
        return out
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): encode(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot journal a {type(value).__name__}: {value!r}")


def decode(data: Any) -> Any:
    """The object :func:`encode` made from a codec dataclass (a tagged mapping)."""
    return _decode(data, _TAGGED)


#: Hint meaning "a tagged codec dataclass, whichever"; ``Any`` means plain JSON, left as it is.
_TAGGED = object()


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode_tagged(data: Any) -> Any:
    if not isinstance(data, Mapping) or not isinstance(data.get(TAG), str):
        raise ValueError(f"expected a tagged object, got {data!r:.80}")
    name = data[TAG]
    cls = CODEC_TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown type {name!r}")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known - {TAG}
    if unknown:
        raise ValueError(f"{name} has unknown fields {sorted(unknown)}")
    arguments = {key: _decode(value, hints[key]) for key, value in data.items() if key != TAG}
    try:
        return cls(**arguments)
    except TypeError as error:
        raise ValueError(f"{name}: {error}") from None


def _decode(data: Any, hint: Any) -> Any:
    if hint is Any:
        return data
    if hint is _TAGGED or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return _decode_tagged(data)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        if len(arms) == 1:
            return _decode(data, arms[0])
        if all(isinstance(arm, type) and dataclasses.is_dataclass(arm) for arm in arms):
            return _decode_tagged(data)
        return data
    if origin is tuple and isinstance(data, list):
        arguments = typing.get_args(hint)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_decode(item, arguments[0]) for item in data)
        return tuple(_decode(item, arm) for item, arm in zip(data, arguments, strict=True))
    if _is_mapping_hint(hint) and isinstance(data, Mapping):
        arguments = typing.get_args(hint)
        value_hint = arguments[1] if len(arguments) == 2 else Any
        return {key: _decode(item, value_hint) for key, item in data.items()}
    if hint is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if origin is Literal and data not in typing.get_args(hint):
        raise ValueError(f"{data!r} is not one of {typing.get_args(hint)}")
    if isinstance(hint, type) and hint in (str, int, float, bool) and (
            not isinstance(data, hint) or (hint is int and isinstance(data, bool))):
        raise ValueError(f"expected {hint.__name__}, got {data!r:.80}")
    return data


def _is_mapping_hint(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin is not None and isinstance(origin, type) and issubclass(origin, Mapping)


def dumps(record: Record) -> bytes:
    """One journal line (compact JSON, no NaN, newline-terminated)."""
    return json.dumps(encode(record), separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode() + b"\n"


def loads(line: bytes | str) -> Record:
    value = decode(json.loads(line))
    if not isinstance(value, RECORD_TYPES):
        raise ValueError(f"{type(value).__name__} is not a journal record")
    return typing.cast(Record, value)


# ------------------------------------------------------------------------------------------ state


Outcome = Literal["recovered", "failed", "done"]


@dataclass
class InjectionState:
    id: str
    kind: str
    spec: Mapping[str, Any]
    target: Target
    owner: str
    lease_ttl: float
    lease_expires: float
    slot: str | None
    registered_at: float
    #: Set once recovery was asked for: the injection is no longer wanted, whatever its lease.
    recover_reason: str | None = None
    outcome: Outcome | None = None
    outcome_reason: str = ""

    @property
    def group(self) -> str:
        return group_of(self.id, self.slot)

    @property
    def wanted(self) -> bool:
        """Still asked for: not ended and no recovery requested."""
        return self.outcome is None and self.recover_reason is None


def group_of(injection_id: str, slot: str | None) -> str:
    return f"slot/{slot}" if slot else f"injection/{injection_id}"


@dataclass
class RunState:
    run: str
    group: str
    members: tuple[str, ...]
    plan: Plan
    location: executor_facts.Location | None
    started_at: float
    #: Steps announced, in the order they were (each may exist from its intent on).
    intents: list[int] = field(default_factory=list)
    applied: dict[int, executor_facts.SpawnedProcess | None] = field(default_factory=dict)
    #: Steps whose command refused: they changed nothing.
    failed: dict[int, str] = field(default_factory=dict)
    undo_intents: set[int] = field(default_factory=set)
    undone: set[int] = field(default_factory=set)
    recovered: bool = False
    finished: bool = False

    @property
    def live(self) -> bool:
        """May still hold changes on the system (neither verified gone nor a finished one-shot)."""
        return not self.recovered and not self.finished

    @property
    def complete(self) -> bool:
        return all(index in self.applied for index in range(len(self.plan.steps)))

    def touched(self) -> list[int]:
        """Steps that may have changed something: announced and not refused (in announcement order)."""
        return [index for index in self.intents if index not in self.failed]

    def possibly_present(self) -> list[int]:
        """Steps that may exist now: announced, not refused, not undone."""
        return [index for index in self.touched() if index not in self.undone]

    def spawned(self) -> dict[str, executor_facts.SpawnedProcess]:
        out: dict[str, executor_facts.SpawnedProcess] = {}
        for index, process in self.applied.items():
            action = self.plan.steps[index].apply
            if process is not None and isinstance(action, plan_vocabulary.Spawn):
                out[action.name] = process
        return out


@dataclass
class JournalState:
    """What the journal says: injections by id, runs by id (both in journal order)."""

    injections: dict[str, InjectionState] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    #: Records naming a run or an injection the journal does not have (counted, never fatal).
    orphans: int = 0

    def apply(self, record: Record) -> None:
        """Fold one record in (the reducer the engine and replay share)."""
        if isinstance(record, Registered):
            self.injections.pop(record.id, None)  # re-registered: moves to the end, starts afresh
            self.injections[record.id] = InjectionState(
                record.id, record.kind, record.spec, record.target, record.owner, record.lease_ttl,
                record.lease_expires, record.slot, record.at)
            return
        if isinstance(record, RunStarted):
            self.runs[record.run] = RunState(record.run, record.group, record.members, record.plan,
                                             record.location, record.at)
            return
        if isinstance(record, StepIntent | StepApplied | StepFailed | UndoIntent | UndoDone | RunRecovered
                      | RunFinished):
            self._apply_to_run(record)
            return
        injection = self.injections.get(record.id)
        if injection is None:
            self.orphans += 1
        elif isinstance(record, LeaseRenewed):
            injection.lease_expires = record.lease_expires
        elif isinstance(record, RecoverRequested):
            if injection.recover_reason is None:
                injection.recover_reason = record.reason
        elif isinstance(record, Recovered):
            injection.outcome, injection.outcome_reason = "recovered", record.reason
        elif isinstance(record, Failed):
            injection.outcome, injection.outcome_reason = "failed", record.error
        else:
            injection.outcome, injection.outcome_reason = "done", record.note

    def _apply_to_run(self, record: StepIntent | StepApplied | StepFailed | UndoIntent | UndoDone
                      | RunRecovered | RunFinished) -> None:
        run = self.runs.get(record.run)
        if run is None or (not isinstance(record, RunRecovered | RunFinished)
                           and not 0 <= record.step < len(run.plan.steps)):
            self.orphans += 1
            return
        if isinstance(record, StepIntent):
            if record.step not in run.intents:
                run.intents.append(record.step)
            run.undone.discard(record.step)
            run.undo_intents.discard(record.step)
        elif isinstance(record, StepApplied):
            if record.step not in run.intents:
                run.intents.append(record.step)
            run.applied[record.step] = record.spawned
        elif isinstance(record, StepFailed):
            if record.step not in run.intents:
                run.intents.append(record.step)
            run.failed[record.step] = record.error
        elif isinstance(record, UndoIntent):
            run.undo_intents.add(record.step)
        elif isinstance(record, UndoDone):
            run.undone.add(record.step)
        elif isinstance(record, RunRecovered):
            run.recovered = True
        else:
            run.finished = True

    # ---- queries

    def live_runs(self, group: str | None = None) -> list[RunState]:
        return [run for run in self.runs.values() if run.live and (group is None or run.group == group)]

    def wanted(self, group: str) -> list[InjectionState]:
        return [i for i in self.injections.values() if i.wanted and i.group == group]

    def groups(self) -> list[str]:
        """Every group that has a live run or an unfinished injection, in journal order."""
        seen: dict[str, None] = {}
        for injection in self.injections.values():
            if injection.outcome is None:
                seen.setdefault(injection.group)
        for run in self.runs.values():
            if run.live:
                seen.setdefault(run.group)
        return list(seen)

    def prune(self) -> None:
        """Forget finished injections and runs that hold nothing (what :meth:`snapshot` leaves out)."""
        for key in [key for key, injection in self.injections.items() if injection.outcome is not None]:
            del self.injections[key]
        for key in [key for key, run in self.runs.items() if not run.live]:
            del self.runs[key]

    def snapshot(self) -> list[Record]:
        """The shortest records that replay to this state minus what is finished (for compaction)."""
        records: list[Record] = []
        for injection in self.injections.values():
            if injection.outcome is not None:
                continue
            records.append(Registered(injection.id, injection.kind, injection.spec, injection.target,
                                      injection.owner, injection.lease_ttl, injection.lease_expires,
                                      injection.slot, injection.registered_at))
            if injection.recover_reason is not None:
                records.append(RecoverRequested(injection.id, injection.recover_reason, injection.registered_at))
        for run in self.runs.values():
            if not run.live:
                continue
            records.append(RunStarted(run.run, run.group, run.members, run.plan, run.location, run.started_at))
            # Steps in intent order, then any step with records but no intent (an undo begun on a step that
            # was never applied, say): compaction keeps every unfinished fact, not only the usual sequences.
            others = (set(run.applied) | set(run.failed) | set(run.undo_intents) | set(run.undone)) - set(run.intents)
            for index in [*run.intents, *sorted(others)]:
                if index in run.intents:
                    records.append(StepIntent(run.run, index, run.started_at))
                if index in run.applied:
                    records.append(StepApplied(run.run, index, run.applied[index], run.started_at))
                if index in run.failed:
                    records.append(StepFailed(run.run, index, run.failed[index], run.started_at))
                if index in run.undo_intents:
                    records.append(UndoIntent(run.run, index, run.started_at))
                if index in run.undone:
                    records.append(UndoDone(run.run, index, run.started_at))
        return records


def replay(records: Iterable[Record]) -> JournalState:
    state = JournalState()
    for record in records:
        state.apply(record)
    return state


# ------------------------------------------------------------------------------------------ file


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The journal file. Not thread-safe: the engine appends from its event loop only."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        #: Records in the file (after the last compaction).
        self.record_count = 0
        #: A torn last line found (and cut off) when the file was opened.
        self.torn_tail = b""

    # ---- reading

    def read(self) -> list[Record]:
        """Every whole record; a torn last line (a crash mid-write) is left out, other damage raises."""
        records, _, _ = self._scan()
        return records

    def _scan(self) -> tuple[list[Record], int, bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0, b""
        records: list[Record] = []
        offset = 0
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            end = offset + len(line) + (1 if number < len(lines) else 0)
            if line.strip(b"\0 \t\r"):
                try:
                    records.append(loads(line))
                except (ValueError, KeyError, TypeError) as error:
                    if data[end:].strip(b"\0 \t\r\n"):
                        raise JournalError(f"{self.path}:{number}: damaged record: {error}") from None
                    return records, offset, data[offset:]
            offset = end
        return records, len(data), b""

    # ---- writing

    def open(self) -> list[Record]:
        """Open for appending (creating the file and its directory durably); returns the records."""
        created_directory = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if created_directory:
            _fsync_directory(self.path.parent.parent)
        records, good_length, torn = self._scan()
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if torn:  # cut the torn line off, or the next record would be glued to it
            os.ftruncate(fd, good_length)
            os.fsync(fd)
        elif good_length and not self._ends_with_newline(fd, good_length):
            os.write(fd, b"\n")  # a whole last record that lost only its newline
            os.fsync(fd)
        self.torn_tail = torn
        if created:
            os.fsync(fd)
            _fsync_directory(self.path.parent)
        self._fd = fd
        self.record_count = len(records)
        return records

    @staticmethod
    def _ends_with_newline(fd: int, length: int) -> bool:
        return os.pread(fd, 1, length - 1) == b"\n"

    def append(self, record: Record) -> None:
        """Write one record and fsync it: when this returns, the record survives a crash."""
        if self._fd is None:
            raise JournalError(f"{self.path}: the journal is not open")
        line = dumps(record)
        written = os.write(self._fd, line)
        if written != len(line):  # a regular file takes a whole write unless the disk is full
            raise JournalError(f"{self.path}: short write ({written} of {len(line)} bytes)")
        os.fsync(self._fd)
        self.record_count += 1

    def compact(self, records: Iterable[Record]) -> None:
        """Replace the file with ``records`` atomically (write, fsync, rename, fsync the directory)."""
        temporary = self.path.with_name(self.path.name + ".compact")
        lines = [dumps(record) for record in records]
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = memoryview(b"".join(lines))
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.record_count = len(lines)

    @property
    def size_bytes(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return self.path.stat().st_size
        return 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __iter__(self) -> Iterator[Record]:
        return iter(self.read())
