"""Host mode's SQLite store: rows round-trip, names are unique while active, errors are sentences, and several
processes share one store without "database is locked"."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from faultmesh.api.common import PAUSE_ANNOTATION
from faultmesh.host.store import (
    DB_NAME,
    SCHEMA_VERSION,
    STATE_DIR_ENV,
    AlreadyExistsError,
    AmbiguousError,
    EventRow,
    ExperimentRow,
    NotFoundError,
    ScheduleRow,
    Store,
    StoreError,
    default_state_dir,
)

STATUS = {
    "conditions": [{"type": "Selected", "status": "True"}, {"type": "AllInjected", "status": "False"}],
    "experiment": {
        "desiredPhase": "Run",
        "containerRecords": [
            {"id": "demo/web", "selectorKey": ".", "phase": "Not Injected", "injectedCount": 0, "recoveredCount": 0}
        ],
    },
}


def experiment(
    name: str = "web-partition",
    *,
    kind: str = "NetworkChaos",
    namespace: str = "demo",
    uid: str | None = None,
    created_at: float = 1000.0,
    **changes: Any,
) -> ExperimentRow:
    manifest = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "annotations": {"team": "sre"}},
        "spec": {"action": "partition", "mode": "all", "selector": {"labelSelectors": {"app": "web"}}},
    }
    row = ExperimentRow(
        uid=uid or f"uid-{kind}-{namespace}-{name}",
        kind=kind,
        namespace=namespace,
        name=name,
        manifest=manifest,
        created_at=created_at,
        paused=False,
        delete_requested_at=None,
        status={},
        run_id=f"{kind.lower()}-{name}-20261122-081500-ab12",
        owner="run:42",
        finished_at=None,
        outcome="",
        reason="",
    )
    return dataclasses.replace(row, **changes)


def schedule(name: str = "nightly", namespace: str = "demo", uid: str = "sched-1") -> ScheduleRow:
    manifest = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": "@every 1m", "type": "PodChaos", "podChaos": {"action": "pod-kill", "mode": "one"}},
    }
    return ScheduleRow(
        uid=uid, namespace=namespace, name=name, manifest=manifest, created_at=5.0, paused=False, status={}, owner=""
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store.open(tmp_path / "state") as opened:
        yield opened


# ---- opening ------------------------------------------------------------------------------------------


def test_open_creates_a_private_state_dir_and_a_wal_database(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    with Store.open(state) as opened:
        assert opened.schema_version() == SCHEMA_VERSION
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    connection = sqlite3.connect(state / DB_NAME)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()


def test_every_connection_waits_for_the_lock_at_least_ten_seconds(store: Store) -> None:
    with store._engine.connect() as connection:
        busy_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    assert busy_ms >= 10_000


def test_reopening_keeps_the_rows(tmp_path: Path) -> None:
    with Store.open(tmp_path) as first:
        first.create(experiment())
    with Store.open(tmp_path) as second:
        assert second.get("NetworkChaos", "demo", "web-partition").uid == "uid-NetworkChaos-demo-web-partition"
        assert second.schema_version() == SCHEMA_VERSION


def test_a_file_that_is_not_sqlite_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is a text file, not a database\n" * 200)
    with pytest.raises(StoreError) as caught:
        Store.open(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / DB_NAME) in message
    assert "not a faultmesh store" in message


def test_a_sqlite_file_of_another_program_is_refused(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / DB_NAME)
    connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match=r"not a faultmesh store \(it has tables invoices\)"):
        Store.open(tmp_path)
    # and it was left alone: no faultmesh tables were added
    connection = sqlite3.connect(tmp_path / DB_NAME)
    assert connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("invoices",)]
    connection.close()


def test_a_store_from_a_newer_faultmesh_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    connection = sqlite3.connect(tmp_path / DB_NAME)
    connection.execute("UPDATE faultmesh_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    connection.commit()
    connection.close()
    with pytest.raises(StoreError) as caught:
        Store.open(tmp_path)
    assert f"newer faultmesh (store schema {SCHEMA_VERSION + 1}" in str(caught.value)
    assert str(tmp_path / DB_NAME) in str(caught.value)


def test_a_state_dir_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"cannot create state dir .*file/state"):
        Store.open(blocker / "state")


def test_a_directory_is_not_a_database_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)


def test_default_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "custom"))
    assert default_state_dir() == tmp_path / "custom"
    monkeypatch.delenv(STATE_DIR_ENV)
    assert default_state_dir() == Path("/var/lib/faultmesh")


# ---- experiments --------------------------------------------------------------------------------------


def test_a_row_round_trips_field_for_field(store: Store) -> None:
    row = experiment(status=STATUS, delete_requested_at=None, paused=True, created_at=1795000000.123)
    store.create(row)
    assert store.get("NetworkChaos", "demo", "web-partition") == row
    assert store.get_uid(row.uid) == row


def test_kind_is_matched_in_any_case(store: Store) -> None:
    store.create(experiment())
    assert store.get("networkchaos", "demo", "web-partition").kind == "NetworkChaos"
    assert [row.name for row in store.list(kind="NETWORKCHAOS")] == ["web-partition"]


def test_a_second_active_experiment_of_the_same_name_is_refused(store: Store) -> None:
    store.create(experiment())
    with pytest.raises(AlreadyExistsError) as caught:
        store.create(experiment(uid="other"))
    assert str(caught.value) == (
        "networkchaos demo/web-partition already exists and is still active (driven by run:42);"
        " delete it first, or wait until it finishes"
    )
    # the same name in another namespace or of another kind is a different experiment
    store.create(experiment(namespace="prod", uid="u-prod"))
    store.create(experiment(kind="StressChaos", uid="u-stress"))
    assert len(store.list()) == 3


def test_a_reused_uid_is_refused(store: Store) -> None:
    store.create(experiment(uid="same"))
    with pytest.raises(AlreadyExistsError, match="uid same already exists"):
        store.create(experiment(name="other", uid="same"))


def test_a_finished_experiment_is_replaced_by_a_new_one_of_the_same_name(store: Store) -> None:
    old = experiment(uid="old")
    store.create(old)
    store.add_event("old", 1.0, "Normal", "Applied", "injected")
    store.finish("old", 2.0, "Completed", "duration elapsed")
    store.create(experiment(uid="new", created_at=3.0))
    assert store.get("NetworkChaos", "demo", "web-partition").uid == "new"
    with pytest.raises(NotFoundError):
        store.get_uid("old")
    assert store.events("old") == []
    connection = sqlite3.connect(store.path)
    assert connection.execute("SELECT count(*) FROM events").fetchone() == (0,)
    connection.close()


def test_not_found_names_the_known_experiments(store: Store) -> None:
    store.create(experiment("a"))
    store.create(experiment("b", namespace="prod"))
    store.create(experiment("c", kind="StressChaos"))
    with pytest.raises(NotFoundError) as caught:
        store.get("NetworkChaos", "demo", "web-partition")
    assert str(caught.value) == "networkchaos demo/web-partition not found; known: demo/a, prod/b"
    with pytest.raises(NotFoundError, match=r"^podchaos demo/x not found; no podchaos is recorded$"):
        store.get("PodChaos", "demo", "x")
    with pytest.raises(NotFoundError, match=r"^no experiment with uid nope$"):
        store.get_uid("nope")


def test_find_by_bare_name_and_its_ambiguity(store: Store) -> None:
    store.create(experiment("web", uid="n1"))
    store.create(experiment("web", namespace="prod", uid="n2"))
    store.create(experiment("web", kind="StressChaos", uid="s1"))
    store.create(experiment("solo", uid="solo"))
    assert store.find("solo", None, None).uid == "solo"
    with pytest.raises(AmbiguousError) as caught:
        store.find("web", None, None)
    assert caught.value.candidates == ["NetworkChaos/demo/web", "NetworkChaos/prod/web", "StressChaos/demo/web"]
    assert "narrow it with -n NAMESPACE or --kind KIND" in str(caught.value)
    with pytest.raises(AmbiguousError, match="narrow it with --kind KIND") as caught:
        store.find("web", "demo", None)
    assert caught.value.candidates == ["NetworkChaos/demo/web", "StressChaos/demo/web"]
    assert store.find("web", "demo", "stresschaos").uid == "s1"
    assert store.find("web", "prod", None).uid == "n2"
    with pytest.raises(NotFoundError, match=r"^experiment nothing not found; known: NetworkChaos/demo/solo, "):
        store.find("nothing", None, None)


def test_find_sees_finished_experiments_too(store: Store) -> None:
    store.create(experiment(uid="done"))
    store.finish("done", 9.0, "Aborted", "probe failed")
    found = store.find("web-partition", None, None)
    assert (found.outcome, found.reason, found.finished_at) == ("Aborted", "probe failed", 9.0)


def test_list_is_newest_first_and_filters(store: Store) -> None:
    store.create(experiment("old", created_at=1.0))
    store.create(experiment("new", created_at=3.0))
    store.create(experiment("mid", created_at=2.0, namespace="prod"))
    store.create(experiment("tie", created_at=3.0, kind="StressChaos"))
    assert [row.name for row in store.list()] == ["tie", "new", "mid", "old"]
    assert [row.name for row in store.list(namespace="demo")] == ["tie", "new", "old"]
    assert [row.name for row in store.list(kind="NetworkChaos", namespace="demo")] == ["new", "old"]
    assert store.list(namespace="nowhere") == []


def test_status_owner_and_delete_request_are_written(store: Store) -> None:
    row = experiment()
    store.create(row)
    store.set_status(row.uid, STATUS)
    store.set_owner(row.uid, "serve:7")
    store.request_delete(row.uid, 50.0)
    store.request_delete(row.uid, 60.0)  # a repeated delete keeps the first request's time
    found = store.get_uid(row.uid)
    assert (found.status, found.owner, found.delete_requested_at) == (STATUS, "serve:7", 50.0)


def test_a_recover_request_is_a_stop_request_with_a_reason(store: Store) -> None:
    row = experiment()
    store.create(row)
    store.request_recover(row.uid, 70.0, "recovered on request")
    found = store.get_uid(row.uid)
    assert (found.delete_requested_at, found.reason, found.finished_at) == (70.0, "recovered on request", None)
    store.finish(row.uid, 80.0, "Recovered", "recovered on request")
    assert store.get_uid(row.uid).outcome == "Recovered"


def test_pause_follows_into_the_manifest_annotation(store: Store) -> None:
    row = experiment()
    store.create(row)
    store.set_paused(row.uid, True)
    paused = store.get_uid(row.uid)
    assert paused.paused
    assert paused.manifest["metadata"]["annotations"] == {"team": "sre", PAUSE_ANNOTATION: "true"}
    store.set_paused(row.uid, False)
    resumed = store.get_uid(row.uid)
    assert not resumed.paused
    assert resumed.manifest["metadata"]["annotations"] == {"team": "sre"}
    assert resumed.manifest["spec"] == row.manifest["spec"]


def test_claim_takes_only_an_unowned_experiment(store: Store) -> None:
    store.create(experiment(owner=""))
    uid = experiment().uid
    assert store.claim(uid, "serve:1")
    assert not store.claim(uid, "serve:2")
    assert store.claim(uid, "run:3", expected="serve:1")
    assert store.get_uid(uid).owner == "run:3"


def test_the_first_finish_wins_and_clears_the_owner(store: Store) -> None:
    row = experiment()
    store.create(row)
    assert store.finish(row.uid, 10.0, "Interrupted", "runner died")
    assert not store.finish(row.uid, 11.0, "Completed", "duration elapsed")
    found = store.get_uid(row.uid)
    assert (found.finished_at, found.outcome, found.reason, found.owner) == (10.0, "Interrupted", "runner died", "")
    assert not found.active
    with pytest.raises(StoreError, match="outcome 'Done' is not one of Completed, Aborted, Failed, Interrupted, "):
        store.finish(row.uid, 12.0, "Done", "")


def test_remove_drops_the_experiment_and_its_events(store: Store) -> None:
    row = experiment()
    store.create(row)
    store.add_event(row.uid, 1.0, "Normal", "Applied", "x")
    store.remove(row.uid)
    assert store.list() == []
    assert store.events(row.uid) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set_status("ghost", {}),
        lambda s: s.set_paused("ghost", True),
        lambda s: s.request_delete("ghost", 1.0),
        lambda s: s.request_recover("ghost", 1.0, "recovered on request"),
        lambda s: s.set_owner("ghost", "run:1"),
        lambda s: s.claim("ghost", "run:1"),
        lambda s: s.finish("ghost", 1.0, "Completed", ""),
        lambda s: s.remove("ghost"),
        lambda s: s.add_event("ghost", 1.0, "Normal", "Applied", ""),
    ],
)
def test_writing_to_an_unknown_uid_is_not_found(store: Store, call: Any) -> None:
    with pytest.raises(NotFoundError, match=r"^no experiment with uid ghost$"):
        call(store)


# ---- events, halt -------------------------------------------------------------------------------------


def test_events_come_back_oldest_first(store: Store) -> None:
    row = experiment()
    store.create(row)
    store.add_event(row.uid, 3.0, "Warning", "Failed", "third")
    store.add_event(row.uid, 1.0, "Normal", "Applied", "first")
    store.add_event(row.uid, 1.0, "Normal", "Applied", "first again")
    assert store.events(row.uid) == [
        EventRow(row.uid, 1.0, "Normal", "Applied", "first"),
        EventRow(row.uid, 1.0, "Normal", "Applied", "first again"),
        EventRow(row.uid, 3.0, "Warning", "Failed", "third"),
    ]
    with pytest.raises(StoreError, match="event type 'Error' is not one of Normal, Warning"):
        store.add_event(row.uid, 4.0, "Error", "X", "")


def test_halt_until_released(tmp_path: Path) -> None:
    with Store.open(tmp_path) as first, Store.open(tmp_path) as second:
        assert first.halted() is None
        first.halt("operator pressed the button", 100.0)
        second.halt("again", 200.0)  # the first halt's reason and time stay
        assert second.halted() == ("operator pressed the button", 100.0)
        second.release()
        assert first.halted() is None
        second.release()  # releasing twice is harmless


# ---- schedules ----------------------------------------------------------------------------------------


def test_schedules_round_trip_and_are_unique_by_name(store: Store) -> None:
    row = schedule()
    store.create_schedule(row)
    assert store.get_schedule("demo", "nightly") == row
    assert store.get_schedule_uid("sched-1") == row
    with pytest.raises(AlreadyExistsError, match=r"^schedule demo/nightly already exists; delete it first$"):
        store.create_schedule(schedule(uid="sched-2"))
    store.create_schedule(schedule(namespace="prod", uid="sched-3"))
    status = {
        "active": [{"kind": "PodChaos", "name": "nightly-x", "namespace": "demo"}],
        "time": "2026-11-22T08:00:00Z",
    }
    store.set_schedule_status("sched-1", status)
    store.set_schedule_owner("sched-1", "serve:9")
    store.set_schedule_paused("sched-1", True)
    found = store.get_schedule("demo", "nightly")
    assert (found.status, found.owner, found.paused) == (status, "serve:9", True)
    assert found.manifest["metadata"]["annotations"] == {PAUSE_ANNOTATION: "true"}
    assert [row.namespace for row in store.list_schedules()] == ["prod", "demo"]  # same time: newest insert first
    assert [row.uid for row in store.list_schedules(namespace="demo")] == ["sched-1"]
    store.remove_schedule("sched-1")
    with pytest.raises(NotFoundError, match=r"^schedule demo/nightly not found; known: prod/nightly$"):
        store.get_schedule("demo", "nightly")
    with pytest.raises(NotFoundError, match=r"^no schedule with uid sched-1$"):
        store.set_schedule_status("sched-1", {})


# ---- sharing between processes ------------------------------------------------------------------------


def test_two_stores_see_each_others_writes(tmp_path: Path) -> None:
    with Store.open(tmp_path) as runner, Store.open(tmp_path) as cli:
        runner.create(experiment())
        uid = experiment().uid
        cli.set_paused(uid, True)
        assert runner.get_uid(uid).paused
        runner.set_status(uid, STATUS)
        assert cli.get_uid(uid).status == STATUS
        cli.request_delete(uid, 5.0)
        assert runner.get_uid(uid).delete_requested_at == 5.0


def test_a_lock_held_past_the_timeout_is_a_clear_error(tmp_path: Path) -> None:
    with Store.open(tmp_path, busy_timeout=0.2) as store:
        store.create(experiment())
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError) as caught:
                store.set_owner(experiment().uid, "run:1")
            assert str(caught.value) == (
                f"{store.path}: database is locked: another faultmesh process held it for more than 0.2 s"
            )
            # readers are not blocked by a writer in WAL mode
            assert store.get_uid(experiment().uid).owner == "run:42"
        finally:
            holder.execute("ROLLBACK")
            holder.close()


WRITES = 50


def _hammer(state_dir: str, worker: str, uid: str) -> None:
    """Read-modify-write in a loop: without BEGIN IMMEDIATE, these collide as "database is locked"."""
    with Store.open(Path(state_dir)) as store:
        for index in range(WRITES):
            store.set_paused(uid, index % 2 == 0)
            store.add_event(uid, float(index), "Normal", worker, str(index))
            store.claim(uid, f"{worker}:{index}", expected=store.get_uid(uid).owner)


def test_concurrent_writers_in_two_processes(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.create(experiment())
    uid = experiment().uid
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(str(tmp_path), name, uid)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    with Store.open(tmp_path) as store:
        reasons = [event.reason for event in store.events(uid)]
    assert reasons.count("a") == WRITES
    assert reasons.count("b") == WRITES


def test_concurrent_writers_in_two_threads(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.create(experiment())
    uid = experiment().uid
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            _hammer(str(tmp_path), name, uid)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with Store.open(tmp_path) as store:
        assert len(store.events(uid)) == 2 * WRITES


def test_one_store_shared_by_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for number in range(20):
                store.create(experiment(f"t{index}-{number}", uid=f"t{index}-{number}"))
                store.set_paused(f"t{index}-{number}", True)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    rows = store.list()
    assert len(rows) == 80
    assert all(row.paused for row in rows)
