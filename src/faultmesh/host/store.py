"""Host mode's state: experiments, their events, Schedules and the halt switch, in SQLite.

Several processes share one store at once (the runner, the CLI, the watchdog, ``faultmesh serve``), so the
database runs in WAL mode (readers never block the one writer) with a long busy timeout, and every write is
a ``BEGIN IMMEDIATE`` transaction: it takes the write lock up front instead of upgrading a read snapshot,
which SQLite refuses with "database is locked" however long the timeout.

Desired state (pause, delete) is written by whoever the user talks to; the process that drives an experiment
(its ``owner``) polls it and writes back the observed ``status`` in Chaos Mesh's wire form.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from faultmesh.api.common import PAUSE_ANNOTATION

from .state import STATE_DIR_ENV
from .state import state_dir as resolve_state_dir

__all__ = [
    "DB_NAME",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "STATE_DIR_ENV",
    "AlreadyExistsError",
    "AmbiguousError",
    "EventRow",
    "ExperimentRow",
    "NotFoundError",
    "ScheduleRow",
    "Store",
    "StoreError",
    "default_state_dir",
]

DB_NAME = "faultmesh.db"
#: Bumped whenever a table changes shape; a store written by a newer faultmesh is refused, not misread.
SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 30.0
#: Recovered: ended early by ``faultmesh recover``; Deleted is never stored (a deleted experiment is removed).
OUTCOMES = ("Completed", "Aborted", "Failed", "Interrupted", "Recovered")
EVENT_TYPES = ("Normal", "Warning")
#: How many names a "not found" message lists before it says how many more there are.
KNOWN_SHOWN = 10


def default_state_dir() -> Path:
    """``$FAULTMESH_STATE_DIR``, else /var/lib/faultmesh: the rule of :func:`.state.state_dir`, in one place."""
    return resolve_state_dir(None)


# ---- errors -------------------------------------------------------------------------------------------


class StoreError(Exception):
    """The store cannot answer; the message is a sentence a CLI prints as is."""


class NotFoundError(StoreError):
    pass


class AlreadyExistsError(StoreError):
    pass


class AmbiguousError(StoreError):
    """A bare name matches several objects; ``candidates`` are ``KIND/namespace/name``."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


# ---- rows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentRow:
    """One experiment as host mode records it: the object, desired state, observed status, and who drives it."""

    uid: str
    kind: str
    namespace: str
    name: str
    manifest: dict[str, Any]  # the object in wire form (apiVersion, kind, metadata, spec)
    created_at: float  # epoch seconds
    paused: bool  # desired; mirrors the annotation experiment.chaos-mesh.org/pause
    delete_requested_at: float | None
    status: dict[str, Any]  # ChaosStatus in wire form ({"conditions": [...], "experiment": {...}})
    run_id: str  # the run dir id (runs/<run_id>)
    owner: str  # who drives it now: "run:<pid>", "serve:<pid>", "" when nobody
    finished_at: float | None
    outcome: str  # "" while active; Completed | Aborted | Failed | Interrupted
    reason: str

    @property
    def key(self) -> str:
        """``KIND/namespace/name``, how messages name an experiment."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def active(self) -> bool:
        return self.finished_at is None


@dataclass(frozen=True)
class EventRow:
    uid: str
    at: float
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class ScheduleRow:
    """A cron Schedule that ``faultmesh serve`` runs; each firing makes an experiment row of its own."""

    uid: str
    namespace: str
    name: str
    manifest: dict[str, Any]  # the Schedule in wire form
    created_at: float
    paused: bool  # desired; mirrors the pause annotation, as for experiments
    status: dict[str, Any]  # ScheduleStatus in wire form ({"active": [...], "time": "..."})
    owner: str  # the serve process that fires it, "" when none

    @property
    def key(self) -> str:
        return f"Schedule/{self.namespace}/{self.name}"


# ---- schema -------------------------------------------------------------------------------------------

metadata = MetaData()

meta_table = Table(
    "faultmesh_meta",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

experiments_table = Table(
    "experiments",
    metadata,
    Column("uid", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("namespace", String, nullable=False),
    Column("name", String, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("delete_requested_at", Float, nullable=True),
    Column("status", JSON, nullable=False),
    Column("run_id", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("outcome", String, nullable=False),
    Column("reason", Text, nullable=False),
    # One active experiment per kind/namespace/name, enforced by SQLite itself so that two processes
    # creating the same name at once cannot both succeed.
    Index(
        "experiments_one_active",
        "kind",
        "namespace",
        "name",
        unique=True,
        sqlite_where=text("finished_at IS NULL"),
    ),
    Index("experiments_by_name", "name"),
)

events_table = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String, ForeignKey("experiments.uid", ondelete="CASCADE"), nullable=False),
    Column("at", Float, nullable=False),
    Column("type", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("message", Text, nullable=False),
    Index("events_by_uid", "uid", "id"),
)

schedules_table = Table(
    "schedules",
    metadata,
    Column("uid", String, primary_key=True),
    Column("namespace", String, nullable=False),
    Column("name", String, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("status", JSON, nullable=False),
    Column("owner", String, nullable=False),
    Index("schedules_by_name", "namespace", "name", unique=True),
)

_HALT_REASON = "halt_reason"
_HALT_AT = "halt_at"
_VERSION = "schema_version"
#: How messages name one row of a table.
_NOUNS = {experiments_table.name: "experiment", schedules_table.name: "schedule"}


# The row dataclasses name each field after the column that stores it, so a row maps to one and back by name.


def _experiment(row: Row[Any]) -> ExperimentRow:
    return ExperimentRow(**row._asdict())


def _schedule(row: Row[Any]) -> ScheduleRow:
    return ScheduleRow(**row._asdict())


def _values(table: Table, row: ExperimentRow | ScheduleRow) -> dict[str, Any]:
    return {column.name: getattr(row, column.name) for column in table.columns}


def _no_such(table: Table, uid: str) -> NotFoundError:
    return NotFoundError(f"no {_NOUNS[table.name]} with uid {uid}")


def with_pause_annotation(manifest: dict[str, Any], paused: bool) -> dict[str, Any]:
    """A copy of ``manifest`` whose pause annotation says ``paused`` (removed on resume, as Chaos Mesh's UI does)."""
    updated = copy.deepcopy(manifest)
    meta = updated.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    if paused:
        annotations[PAUSE_ANNOTATION] = "true"
    else:
        annotations.pop(PAUSE_ANNOTATION, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return updated


def _known(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:KNOWN_SHOWN])
    more = len(keys) - KNOWN_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


# ---- the store ----------------------------------------------------------------------------------------


class Store:
    """The SQLite store at ``path``; safe to share between threads and processes."""

    def __init__(self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        try:
            is_dir = self.path.is_dir()
        except OSError as error:
            raise StoreError(f"cannot open {self.path}: {error.strerror or error}") from None
        if is_dir:
            raise StoreError(f"{self.path}: is a directory, not a faultmesh store (give the state dir to Store.open)")
        self._engine = self._make_engine()
        self._writer = self._engine.execution_options(faultmesh_begin="BEGIN IMMEDIATE")
        try:
            self._prepare()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def open(cls, state_dir: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
        """The store of a state dir, creating the dir (mode 0700) and the database when missing."""
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create state dir {state_dir}: {error.strerror or error}") from None
        if not state_dir.is_dir():
            raise StoreError(f"state dir {state_dir} is not a directory")
        return cls(state_dir / DB_NAME, busy_timeout=busy_timeout)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _make_engine(self) -> Engine:
        engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": self.busy_timeout, "check_same_thread": False},
        )
        busy_ms = int(self.busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            # Autocommit at the driver level: transactions are begun by the "begin" hook below, so a write
            # can say BEGIN IMMEDIATE.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql(connection.get_execution_options().get("faultmesh_begin", "BEGIN"))

        return engine

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn the driver's errors into one sentence naming the database file."""
        try:
            yield
        except StoreError:
            raise
        except DBAPIError as error:
            raise StoreError(self._explain(error.orig)) from None
        except (SQLAlchemyError, sqlite3.Error) as error:
            raise StoreError(f"{self.path}: {error}") from None

    def _explain(self, error: BaseException | None) -> str:
        detail = str(error) if error is not None else "unknown database error"
        if "not a database" in detail or "malformed" in detail:
            return f"{self.path}: not a faultmesh store or damaged ({detail}); move it away or use another --state-dir"
        if "locked" in detail or "busy" in detail:
            return (
                f"{self.path}: database is locked: another faultmesh process held it for more than"
                f" {self.busy_timeout:g} s"
            )
        if "unable to open" in detail or "readonly" in detail:
            return f"{self.path}: cannot open or write the store ({detail}); check permissions or --state-dir"
        return f"{self.path}: {detail}"

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._guard(), self._writer.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._guard(), self._engine.begin() as connection:
            yield connection

    def _prepare(self) -> None:
        """Create the tables of a new store; refuse a foreign SQLite file or one from a newer faultmesh."""
        with self._write() as connection:
            names = {
                row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if names and meta_table.name not in names:
                raise StoreError(
                    f"{self.path}: a SQLite database, but not a faultmesh store (it has tables"
                    f" {', '.join(sorted(names))}); move it away or use another --state-dir"
                )
            version = None
            if names:
                version = connection.execute(
                    select(meta_table.c.value).where(meta_table.c.key == _VERSION)
                ).scalar_one_or_none()
            if version is not None:
                try:
                    number = int(version)
                except ValueError:
                    raise StoreError(f"{self.path}: schema version {version!r} is not a number") from None
                if number > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: written by a newer faultmesh (store schema {number}; this faultmesh knows"
                        f" up to {SCHEMA_VERSION}); upgrade faultmesh or use another --state-dir"
                    )
            metadata.create_all(connection)
            if version is None:
                connection.execute(insert(meta_table).values(key=_VERSION, value=str(SCHEMA_VERSION)))

    def schema_version(self) -> int:
        with self._read() as connection:
            value = connection.execute(select(meta_table.c.value).where(meta_table.c.key == _VERSION)).scalar_one()
        return int(value)

    # -- experiments ------------------------------------------------------------------------------------

    def create(self, row: ExperimentRow) -> None:
        """Record a new experiment; a finished one of the same kind/namespace/name is replaced, events and all.

        Raises :class:`AlreadyExistsError` while one of that name is still active.
        """
        if row.outcome and row.outcome not in OUTCOMES:
            raise StoreError(f"outcome {row.outcome!r} is not one of {', '.join(OUTCOMES)}")
        table = experiments_table
        same_name = (table.c.kind == row.kind) & (table.c.namespace == row.namespace) & (table.c.name == row.name)
        with self._write() as connection:
            connection.execute(delete(table).where(same_name & table.c.finished_at.is_not(None)))
            try:
                connection.execute(insert(table).values(_values(table, row)))
            except IntegrityError as error:
                if "experiments.uid" in str(error.orig):
                    raise AlreadyExistsError(f"an experiment with uid {row.uid} already exists") from None
                owner = connection.execute(
                    select(table.c.owner).where(same_name & table.c.finished_at.is_(None))
                ).scalar_one_or_none()
                driven = f" (driven by {owner})" if owner else ""
                raise AlreadyExistsError(
                    f"{row.kind.lower()} {row.namespace}/{row.name} already exists and is still active{driven};"
                    " delete it first, or wait until it finishes"
                ) from None

    def get(self, kind: str, namespace: str, name: str) -> ExperimentRow:
        """The experiment of that kind (any case), namespace and name, or :class:`NotFoundError`."""
        table = experiments_table
        of_kind = func.lower(table.c.kind) == kind.lower()
        return _experiment(self._get_named(table, kind.lower(), namespace, name, of_kind))

    def get_uid(self, uid: str) -> ExperimentRow:
        return _experiment(self._get_uid(experiments_table, uid))

    def find(self, name: str, namespace: str | None = None, kind: str | None = None) -> ExperimentRow:
        """The one experiment called ``name``, narrowed by namespace and kind when given.

        Raises :class:`AmbiguousError` listing the candidates when several match, :class:`NotFoundError` when
        none does.
        """
        table = experiments_table
        condition = table.c.name == name
        if namespace is not None:
            condition &= table.c.namespace == namespace
        if kind is not None:
            condition &= func.lower(table.c.kind) == kind.lower()
        with self._read() as connection:
            found = [_experiment(row) for row in connection.execute(select(table).where(condition))]
            if not found:
                known = [
                    f"{row.kind}/{row.namespace}/{row.name}"
                    for row in connection.execute(
                        select(table.c.kind, table.c.namespace, table.c.name).order_by(
                            table.c.namespace, table.c.kind, table.c.name
                        )
                    )
                ]
        if len(found) == 1:
            return found[0]
        what = f"{kind.lower()} " if kind else "experiment "
        where = f"{namespace}/{name}" if namespace is not None else name
        if found:
            candidates = sorted(row.key for row in found)
            narrow = (
                "-n NAMESPACE or --kind KIND"
                if namespace is None and kind is None
                else ("--kind KIND" if kind is None else "-n NAMESPACE")
            )
            raise AmbiguousError(
                f"{what}{where} is ambiguous: {', '.join(candidates)}; narrow it with {narrow}", candidates
            )
        hint = f"known: {_known(known)}" if known else "no experiment is recorded"
        raise NotFoundError(f"{what}{where} not found; {hint}")

    def list(self, *, kind: str | None = None, namespace: str | None = None) -> builtins.list[ExperimentRow]:
        """Every experiment (active and finished), newest first."""
        table = experiments_table
        conditions = []
        if kind is not None:
            conditions.append(func.lower(table.c.kind) == kind.lower())
        if namespace is not None:
            conditions.append(table.c.namespace == namespace)
        return [_experiment(row) for row in self._newest_first(table, *conditions)]

    def set_status(self, uid: str, status: dict[str, Any]) -> None:
        self._update(experiments_table, uid, status=status)

    def set_paused(self, uid: str, paused: bool) -> None:
        """Desired pause state; the manifest's pause annotation follows, so ``get -o yaml`` shows it."""
        self._set_paused(experiments_table, uid, paused)

    def request_delete(self, uid: str, at: float) -> None:
        """Ask the owner to recover and drop the experiment; the first request's time is kept."""
        table = experiments_table
        self._update(table, uid, delete_requested_at=func.coalesce(table.c.delete_requested_at, at))

    def request_recover(self, uid: str, at: float, reason: str) -> None:
        """Ask the owner to recover the experiment now and end it, keeping it listed (``faultmesh recover``)."""
        table = experiments_table
        self._update(table, uid, delete_requested_at=func.coalesce(table.c.delete_requested_at, at), reason=reason)

    def set_owner(self, uid: str, owner: str) -> None:
        self._update(experiments_table, uid, owner=owner)

    def claim(self, uid: str, owner: str, *, expected: str = "") -> bool:
        """Become the owner only if the current owner is ``expected``: two drivers cannot both take one experiment."""
        table = experiments_table
        with self._write() as connection:
            current = connection.execute(select(table.c.owner).where(table.c.uid == uid)).one_or_none()
            if current is None:
                raise _no_such(table, uid)
            if current.owner != expected:
                return False
            connection.execute(update(table).where(table.c.uid == uid).values(owner=owner))
            return True

    def finish(self, uid: str, at: float, outcome: str, reason: str) -> bool:
        """Mark the experiment finished and ownerless; the first finish wins (returns whether this one did)."""
        if outcome not in OUTCOMES:
            raise StoreError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        table = experiments_table
        with self._write() as connection:
            current = connection.execute(select(table.c.finished_at).where(table.c.uid == uid)).one_or_none()
            if current is None:
                raise _no_such(table, uid)
            if current.finished_at is not None:
                return False
            connection.execute(
                update(table).where(table.c.uid == uid).values(finished_at=at, outcome=outcome, reason=reason, owner="")
            )
            return True

    def remove(self, uid: str) -> None:
        """Drop the experiment and its events (after its faults are recovered)."""
        self._remove(experiments_table, uid)

    # -- events -----------------------------------------------------------------------------------------

    def add_event(self, uid: str, at: float, type: str, reason: str, message: str) -> None:
        if type not in EVENT_TYPES:
            raise StoreError(f"event type {type!r} is not one of {', '.join(EVENT_TYPES)}")
        with self._write() as connection:
            try:
                connection.execute(
                    insert(events_table).values(uid=uid, at=at, type=type, reason=reason, message=message)
                )
            except IntegrityError:
                raise _no_such(experiments_table, uid) from None

    def events(self, uid: str) -> builtins.list[EventRow]:
        """The experiment's events, oldest first."""
        table = events_table
        with self._read() as connection:
            rows = connection.execute(select(table).where(table.c.uid == uid).order_by(table.c.at, table.c.id))
            return [EventRow(row.uid, row.at, row.type, row.reason, row.message) for row in rows]

    # -- halt -------------------------------------------------------------------------------------------

    def halt(self, reason: str, at: float) -> None:
        """Refuse new runs until :meth:`release`; a second halt keeps the first one's reason and time."""
        with self._write() as connection:
            if connection.execute(select(meta_table.c.key).where(meta_table.c.key == _HALT_AT)).first() is None:
                connection.execute(
                    insert(meta_table),
                    [{"key": _HALT_REASON, "value": reason}, {"key": _HALT_AT, "value": json.dumps(at)}],
                )

    def release(self) -> None:
        with self._write() as connection:
            connection.execute(delete(meta_table).where(meta_table.c.key.in_((_HALT_REASON, _HALT_AT))))

    def halted(self) -> tuple[str, float] | None:
        """``(reason, at)`` while halted, else None."""
        with self._read() as connection:
            rows = connection.execute(
                select(meta_table.c.key, meta_table.c.value).where(meta_table.c.key.in_((_HALT_REASON, _HALT_AT)))
            )
            values = {row.key: row.value for row in rows}
        if _HALT_AT not in values:
            return None
        return values.get(_HALT_REASON, ""), float(json.loads(values[_HALT_AT]))

    # -- schedules --------------------------------------------------------------------------------------

    def create_schedule(self, row: ScheduleRow) -> None:
        """Record a Schedule; :class:`AlreadyExistsError` if one of that namespace/name exists."""
        with self._write() as connection:
            try:
                connection.execute(insert(schedules_table).values(_values(schedules_table, row)))
            except IntegrityError as error:
                if "schedules.uid" in str(error.orig):
                    raise AlreadyExistsError(f"a schedule with uid {row.uid} already exists") from None
                raise AlreadyExistsError(
                    f"schedule {row.namespace}/{row.name} already exists; delete it first"
                ) from None

    def get_schedule(self, namespace: str, name: str) -> ScheduleRow:
        return _schedule(self._get_named(schedules_table, "schedule", namespace, name))

    def get_schedule_uid(self, uid: str) -> ScheduleRow:
        return _schedule(self._get_uid(schedules_table, uid))

    def list_schedules(self, *, namespace: str | None = None) -> builtins.list[ScheduleRow]:
        """Every Schedule, newest first."""
        table = schedules_table
        conditions = [] if namespace is None else [table.c.namespace == namespace]
        return [_schedule(row) for row in self._newest_first(table, *conditions)]

    def set_schedule_status(self, uid: str, status: dict[str, Any]) -> None:
        self._update(schedules_table, uid, status=status)

    def set_schedule_owner(self, uid: str, owner: str) -> None:
        self._update(schedules_table, uid, owner=owner)

    def set_schedule_paused(self, uid: str, paused: bool) -> None:
        self._set_paused(schedules_table, uid, paused)

    def remove_schedule(self, uid: str) -> None:
        self._remove(schedules_table, uid)

    # -- by table: experiments and schedules are read and written alike -------------------------------------

    def _get_named(self, table: Table, noun: str, namespace: str, name: str, *scope: ColumnElement[bool]) -> Row[Any]:
        """The row named ``namespace/name`` within ``scope``, or :class:`NotFoundError` listing the names there."""
        with self._read() as connection:
            found = connection.execute(
                select(table).where(*scope, table.c.namespace == namespace, table.c.name == name)
            ).first()
            if found is not None:
                return found
            known = [
                f"{row.namespace}/{row.name}"
                for row in connection.execute(
                    select(table.c.namespace, table.c.name).where(*scope).order_by(table.c.namespace, table.c.name)
                )
            ]
        hint = f"known: {_known(known)}" if known else f"no {noun} is recorded"
        raise NotFoundError(f"{noun} {namespace}/{name} not found; {hint}")

    def _get_uid(self, table: Table, uid: str) -> Row[Any]:
        with self._read() as connection:
            found = connection.execute(select(table).where(table.c.uid == uid)).first()
        if found is None:
            raise _no_such(table, uid)
        return found

    def _newest_first(self, table: Table, *conditions: ColumnElement[bool]) -> builtins.list[Row[Any]]:
        query = select(table).where(*conditions).order_by(table.c.created_at.desc(), text(f"{table.name}.rowid DESC"))
        with self._read() as connection:
            return builtins.list(connection.execute(query))

    def _update(self, table: Table, uid: str, **values: Any) -> None:
        with self._write() as connection:
            result = connection.execute(update(table).where(table.c.uid == uid).values(**values))
            if result.rowcount == 0:
                raise _no_such(table, uid)

    def _set_paused(self, table: Table, uid: str, paused: bool) -> None:
        with self._write() as connection:
            manifest = connection.execute(select(table.c.manifest).where(table.c.uid == uid)).scalar_one_or_none()
            if manifest is None:
                raise _no_such(table, uid)
            connection.execute(
                update(table)
                .where(table.c.uid == uid)
                .values(paused=paused, manifest=with_pause_annotation(manifest, paused))
            )

    def _remove(self, table: Table, uid: str) -> None:
        with self._write() as connection:
            result = connection.execute(delete(table).where(table.c.uid == uid))
            if result.rowcount == 0:
                raise _no_such(table, uid)
