"""The serving process's scheduler (faultmesh.host.schedules) over a real store, a fake clock and a fake launcher.

The launcher stands for ``faultmesh serve``: it records the experiment a run makes (and finishes or deletes it
when told), so these tests see what the scheduler decides and writes, without injecting anything.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from faultmesh.api.base import Resource
from faultmesh.api.loader import load_text
from faultmesh.api.schedule import Schedule
from faultmesh.host.inventory import InventoryEntry
from faultmesh.host.runner import RunRefusedError
from faultmesh.host.schedules import (
    MANAGED_BY_LABEL,
    Scheduler,
    ScheduleRefusedError,
    check_schedule,
    child_object,
    drop_run_dir,
)
from faultmesh.host.state import Layout
from faultmesh.host.store import ExperimentRow, ScheduleRow, Store
from faultmesh.host.targets import ProcessFacts, inventory_from_facts
from faultmesh.selection import Inventory

OWNER = "serve:1:1"
START = 1_800_000_000.4


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeLauncher:
    """Records an experiment row per launch, as the serving process would, and deletes on request."""

    owner = OWNER

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.launched: list[ExperimentRow] = []
        self.deleted: list[tuple[str, bool]] = []
        self.refusal: str | None = None

    async def launch_child(self, resource: Resource) -> ExperimentRow:
        if self.refusal is not None:
            raise RunRefusedError([self.refusal])
        name = resource.metadata.name or ""
        row = ExperimentRow(
            uid=f"uid-{name}", kind=resource.kind, namespace=resource.metadata.namespace or "", name=name,
            manifest=resource.model_dump(mode="json", by_alias=True, exclude_none=True), created_at=self.clock(),
            paused=False, delete_requested_at=None, status={}, run_id=f"run-{name}", owner=OWNER, finished_at=None,
            outcome="", reason="",
        )
        self.store.create(row)
        self.launched.append(row)
        return row

    async def delete_experiment(self, row: ExperimentRow, *, drop_history: bool) -> None:
        self.deleted.append((row.name, drop_history))
        self.store.remove(row.uid)

    def finish_all(self) -> None:
        for row in self.store.list():
            if row.active:
                self.store.finish(row.uid, self.clock(), "Completed", "duration elapsed")


def schedule_text(**spec: Any) -> str:
    base: dict[str, Any] = {
        "schedule": "@every 2s",
        "concurrencyPolicy": "Forbid",
        "historyLimit": 2,
        "type": "StressChaos",
        "stressChaos": {
            "mode": "one",
            "selector": {"labelSelectors": {"app": "web"}},
            "stressors": {"cpu": {"workers": 1, "load": 10}},
            "duration": "3s",
        },
    }
    base.update(spec)
    return yaml.safe_dump({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
                           "metadata": {"name": "burn", "namespace": "demo"}, "spec": base})


def load_schedule(text: str) -> Schedule:
    (schedule,) = load_text(text).objects
    assert isinstance(schedule, Schedule)
    return schedule


def inventory(*, matching: bool = True) -> Inventory:
    entry = InventoryEntry("demo", "web", "pid", str(os.getpid()), {"app": "web" if matching else "db"})
    return inventory_from_facts([], [ProcessFacts(entry, os.getpid())], "host")


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock(START)
        self.store = Store.open(tmp_path)
        self.layout = Layout(tmp_path)
        self.launcher = FakeLauncher(self.store, self.clock)
        self.scheduler = Scheduler(self.store, self.layout, self.launcher, clock=self.clock)

    def create(self, text: str | None = None) -> ScheduleRow:
        row, notes = self.scheduler.create(load_schedule(text or schedule_text()), inventory())
        assert notes == []
        return row

    def tick(self, seconds: float = 0.0) -> float:
        self.clock.now += seconds
        return asyncio.run(self.scheduler.reconcile_all())

    def schedule(self) -> ScheduleRow:
        return self.store.get_schedule("demo", "burn")

    def reasons(self, row: ScheduleRow) -> list[str]:
        return [event.reason for event in self.scheduler.events(row.uid)]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    made = Harness(tmp_path)
    yield made
    made.store.close()


def test_a_run_fires_when_due_and_forbid_holds_the_next_while_it_lasts(harness: Harness) -> None:
    row = harness.create()
    wait = harness.tick()
    assert harness.launcher.launched == []
    # created at x.4: @every counts whole seconds, so the first run is due at floor(created) + 2
    assert 0 < wait <= 1.0
    harness.tick(1.7)
    (first,) = harness.launcher.launched
    assert first.name.startswith("burn-") and len(first.name) == len("burn-") + 5
    status = harness.schedule().status
    assert status["time"] == "2027-01-15T08:00:02Z"
    assert [ref["name"] for ref in status["active"]] == [first.name]
    assert harness.reasons(row)[-2:] == ["Spawned", "Updated"]
    harness.tick(2.0)
    harness.tick(0.5)
    assert len(harness.launcher.launched) == 1
    assert harness.reasons(row)[-1] == "Forbid"
    assert harness.reasons(row).count("Forbid") == 1  # said once while the run lasts, not every tick
    harness.launcher.finish_all()
    harness.tick(0.1)
    assert len(harness.launcher.launched) == 2  # the skipped run fires as soon as the last one ended


def test_a_spawned_experiment_is_owned_and_labelled_by_its_schedule(harness: Harness) -> None:
    row = harness.create()
    harness.tick(2.0)
    (made,) = harness.launcher.launched
    metadata = made.manifest["metadata"]
    assert metadata["namespace"] == "demo"
    assert metadata["labels"] == {MANAGED_BY_LABEL: "burn"}
    (owner,) = metadata["ownerReferences"]
    assert owner == {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule", "name": "burn", "uid": row.uid,
                     "controller": True, "blockOwnerDeletion": True}
    assert made.manifest["spec"]["stressors"] == {"cpu": {"workers": 1, "load": 10}}
    assert made.manifest["spec"]["duration"] == "3s"


def test_allow_overlaps_runs(harness: Harness) -> None:
    harness.create(schedule_text(concurrencyPolicy="Allow", historyLimit=5))
    for _ in range(3):
        harness.tick(2.0)
    assert len(harness.launcher.launched) == 3
    assert all(row.active for row in harness.store.list())


def test_history_beyond_the_limit_is_deleted_oldest_first(harness: Harness) -> None:
    harness.create(schedule_text(historyLimit=2))
    for _ in range(4):
        harness.tick(2.0)
        harness.launcher.finish_all()
    names = [row.name for row in harness.launcher.launched]
    assert len(names) == 4
    assert harness.launcher.deleted == [(names[0], True), (names[1], True)]
    kept = sorted(row.name for row in harness.store.list())
    assert kept == sorted(names[2:])
    assert sorted(ref["name"] for ref in harness.schedule().status["active"]) == kept


def test_pausing_stops_firing_and_pauses_its_runs_resuming_resumes_them(harness: Harness) -> None:
    harness.create(schedule_text(concurrencyPolicy="Allow"))
    harness.tick(2.0)
    (made,) = harness.launcher.launched
    harness.scheduler.set_paused(harness.schedule(), True)
    harness.tick(0.0)
    assert harness.store.get_uid(made.uid).paused
    harness.tick(6.0)
    assert len(harness.launcher.launched) == 1
    harness.scheduler.set_paused(harness.schedule(), False)
    harness.tick(0.0)
    assert not harness.store.get_uid(made.uid).paused
    # The most recent missed run fires at once on resume, as Chaos Mesh's does.
    assert len(harness.launcher.launched) == 2
    assert {"Paused", "Resumed"} <= set(harness.reasons(harness.schedule()))


def test_a_run_that_cannot_be_made_counts_and_says_why(harness: Harness) -> None:
    row = harness.create()
    harness.launcher.refusal = "spec.selector: no target matched"
    harness.tick(2.0)
    events = harness.scheduler.events(row.uid)
    failed = [event for event in events if event.reason == "Failed"]
    assert failed and failed[-1].message == "Failed to create new object: spec.selector: no target matched"
    assert harness.schedule().status["time"] == "2027-01-15T08:00:02Z"
    harness.tick(0.5)
    assert [event.reason for event in harness.scheduler.events(row.uid)].count("Failed") == 1


def test_a_halted_host_fires_nothing_until_released(harness: Harness) -> None:
    harness.create()
    harness.store.halt("maintenance", harness.clock())
    harness.tick(5.0)
    assert harness.launcher.launched == []
    harness.store.release()
    harness.tick(0.0)
    assert len(harness.launcher.launched) == 1


def test_deleting_a_schedule_deletes_what_it_made(harness: Harness) -> None:
    harness.create(schedule_text(concurrencyPolicy="Allow", historyLimit=5))
    harness.tick(2.0)
    harness.tick(2.0)
    made = asyncio.run(harness.scheduler.delete(harness.schedule()))
    assert sorted(row.name for row in made) == sorted(row.name for row in harness.launcher.launched)
    assert all(not drop for _, drop in harness.launcher.deleted)  # a user's delete keeps the run reports
    assert harness.store.list() == [] and harness.store.list_schedules() == []
    harness.tick(10.0)
    assert len(harness.launcher.launched) == 2


def test_adopting_and_releasing_schedules(harness: Harness) -> None:
    row = harness.create()
    harness.store.set_schedule_owner(row.uid, "serve:999:1")
    harness.scheduler.adopt()
    assert harness.schedule().owner == OWNER
    harness.scheduler.release()
    assert harness.schedule().owner == ""


def test_child_object_copies_the_embedded_spec() -> None:
    schedule = load_schedule(schedule_text())
    row = ScheduleRow("uid-s", "demo", "burn", schedule.model_dump(mode="json", by_alias=True, exclude_none=True),
                      0.0, False, {}, OWNER)
    child = child_object(row, "burn-abcde")
    assert child["kind"] == "StressChaos"
    assert child["metadata"]["name"] == "burn-abcde"
    assert child["spec"] == row.manifest["spec"]["stressChaos"]
    child["spec"]["duration"] = "1h"
    assert row.manifest["spec"]["stressChaos"]["duration"] == "3s"  # a copy, not the schedule's own


def test_check_refuses_workflows_and_kinds_without_local_targets() -> None:
    workflow = load_schedule(schedule_text(type="Workflow", workflow={"entry": "e", "templates": [
        {"name": "e", "templateType": "Suspend", "deadline": "1s"}]}))
    with pytest.raises(ScheduleRefusedError, match=r"spec\.type: Workflow schedules are not supported"):
        check_schedule(workflow, inventory())
    aws = load_schedule(schedule_text(type="AWSChaos", awsChaos={"action": "ec2-stop", "awsRegion": "eu-west-1",
                                                                  "ec2Instance": "i-1"}))
    with pytest.raises(ScheduleRefusedError) as refused:
        check_schedule(aws, inventory())
    assert refused.value.status == 422
    assert refused.value.problems[0].startswith("spec.awsChaos: ")
    assert "no pod selector" in refused.value.problems[0]


def test_check_only_notes_when_nothing_matches_yet() -> None:
    notes = check_schedule(load_schedule(schedule_text()), inventory(matching=False))
    assert len(notes) == 1 and "no target matches now" in notes[0]


def test_a_second_schedule_of_the_same_name_is_refused(harness: Harness) -> None:
    harness.create()
    with pytest.raises(ScheduleRefusedError) as refused:
        harness.create()
    assert refused.value.status == 409
    assert "already exists" in refused.value.problems[0]


def test_dropping_a_run_dir_removes_only_that_run(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    kept, dropped = layout.run_dir("keep-1"), layout.run_dir("drop-1")
    for run_dir in (kept, dropped):
        run_dir.mkdir(parents=True)
        (run_dir / "journal.json").write_text("{}")
    row = ExperimentRow("u", "StressChaos", "demo", "x", {}, 0.0, False, None, {}, "drop-1", "", 1.0, "Completed", "")
    drop_run_dir(layout, row)
    assert not dropped.exists() and kept.exists()
    for hostile in ("../keep-1", ".", ""):
        drop_run_dir(layout, ExperimentRow("u", "K", "n", "x", {}, 0.0, False, None, {}, hostile, "", 1.0, "", ""))
    assert kept.exists()
