"""``faultmesh get`` / ``describe`` over host mode's store: phases, ages, wire form, tables, describe text, and
the commands' exit codes and messages."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from faultmesh.api.common import PAUSE_ANNOTATION
from faultmesh.api.loader import load_text
from faultmesh.host.store import DB_NAME, EventRow, ExperimentRow, ScheduleRow, Store
from faultmesh.host.views import (
    ViewError,
    describe_command,
    describe_experiment,
    describe_schedule,
    experiment_object,
    experiment_phase,
    experiments_table,
    field_label,
    get_command,
    human_age,
    list_object,
    made_by,
    resolve_kind,
    schedule_object,
    schedules_table,
    target_counts,
)

NOW = 1_795_000_100.0


def record(target: str, phase: str, **extra: Any) -> dict[str, Any]:
    return {"id": target, "selectorKey": ".", "phase": phase, "injectedCount": 1, "recoveredCount": 0, **extra}


def status(*phases: str, desired: str = "Run", paused: bool = False, conditions: bool = True) -> dict[str, Any]:
    records = [record(f"demo/web-{index}", phase) for index, phase in enumerate(phases)]
    found: dict[str, Any] = {"experiment": {"desiredPhase": desired, "containerRecords": records}}
    if conditions:
        found["conditions"] = [
            {"type": "Selected", "status": "True"},
            {"type": "AllInjected", "status": str(all(p == "Injected" for p in phases))},
            {"type": "Paused", "status": str(paused)},
        ]
    return found


def row(name: str = "web-partition", **changes: Any) -> ExperimentRow:
    kind = changes.pop("kind", "NetworkChaos")
    namespace = changes.pop("namespace", "demo")
    base = ExperimentRow(
        uid=f"uid-{kind}-{namespace}-{name}",
        kind=kind,
        namespace=namespace,
        name=name,
        manifest={
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "sre"}},
            "spec": {
                "action": "partition",
                "mode": "all",
                "selector": {"namespaces": [namespace], "labelSelectors": {"app": "web", "tier": "front"}},
                "direction": "to",
                "target": {"mode": "all", "selector": {"namespaces": [namespace], "labelSelectors": {"app": "db"}}},
                "duration": "30s",
            },
        },
        created_at=NOW - 200,
        paused=False,
        delete_requested_at=None,
        status=status("Injected"),
        run_id=f"{kind.lower()}-{name}-20261122-081500-ab12",
        owner="run:4242",
        finished_at=None,
        outcome="",
        reason="",
    )
    return dataclasses.replace(base, **changes)


def text_of(renderable: Any, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in output.splitlines())


# ---- small pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (10_799, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60 + 30, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, shown: str) -> None:
    assert human_age(seconds) == shown


@pytest.mark.parametrize(
    ("changes", "phase"),
    [
        ({"status": status("Injected", "Injected")}, "Running"),
        ({"status": status("Injected", "Not Injected")}, "Injecting"),
        ({"status": {}}, "Injecting"),
        ({"status": {}, "owner": ""}, "Pending"),
        ({"paused": True, "status": status("Injected", "Not Injected")}, "Recovering"),
        ({"paused": True, "status": status("Not Injected")}, "Paused"),
        # the Paused condition alone (annotation set by hand in the manifest) counts as paused too
        ({"status": status("Not Injected", paused=True)}, "Paused"),
        ({"status": status("Injected", desired="Stop")}, "Recovering"),
        ({"status": status("Not Injected", desired="Stop")}, "Finished"),
        ({"delete_requested_at": NOW - 1}, "Deleting"),
        ({"delete_requested_at": NOW - 1, "reason": "recovered on request"}, "Recovering"),
        ({"finished_at": NOW - 1, "outcome": "Completed", "delete_requested_at": NOW - 2}, "Finished"),
    ],
)
def test_phase_is_derived_from_records_and_desired_state(changes: dict[str, Any], phase: str) -> None:
    assert experiment_phase(row(**changes)) == phase


def test_target_counts() -> None:
    assert target_counts(row(status=status("Injected", "Not Injected", "Injected"))) == (2, 3)
    assert target_counts(row(status={})) == (0, 0)


@pytest.mark.parametrize(
    ("spelling", "kind"),
    [
        ("networkchaos", "NetworkChaos"),
        ("NetworkChaos", "NetworkChaos"),
        ("NETWORKCHAOS", "NetworkChaos"),
        ("podchaos", "PodChaos"),
        ("schedules", "Schedule"),
        ("schedule", "Schedule"),
        ("httpchaos", "HTTPChaos"),
    ],
)
def test_kind_spellings(spelling: str, kind: str) -> None:
    assert resolve_kind(spelling) == kind


def test_an_unknown_kind_gets_a_suggestion() -> None:
    with pytest.raises(ViewError, match='"networkchoas" is not an experiment kind; did you mean "NetworkChaos"'):
        resolve_kind("networkchoas")
    with pytest.raises(ViewError, match=r"is not an experiment kind \(one of AWSChaos, .*StressChaos"):
        resolve_kind("workflow")  # a Workflow is not something host mode records


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("labelSelectors", "Label Selectors"),
        ("mode", "Mode"),
        ("containerNames", "Container Names"),
        ("app.kubernetes.io/name", "app.kubernetes.io/name"),
        ("externalTargets", "External Targets"),
    ],
)
def test_field_labels_are_titled_like_kubectl_describe(key: str, label: str) -> None:
    assert field_label(key) == label


# ---- wire form ----------------------------------------------------------------------------------------


def test_the_object_carries_metadata_status_and_host_annotations() -> None:
    shown = row(
        paused=True,
        delete_requested_at=NOW - 10,
        finished_at=NOW - 5,
        outcome="Aborted",
        reason="probe web-health failed 3 times",
        owner="",
    )
    obj = experiment_object(shown)
    assert list(obj) == ["apiVersion", "kind", "metadata", "spec", "status"]
    meta = obj["metadata"]
    assert meta["uid"] == shown.uid
    assert meta["creationTimestamp"] == "2026-11-18T11:05:00Z"
    assert meta["deletionTimestamp"] == "2026-11-18T11:08:10Z"
    assert meta["labels"] == {"team": "sre"}
    assert meta["annotations"] == {
        PAUSE_ANNOTATION: "true",
        "host.faultmesh.io/run": shown.run_id,
        "host.faultmesh.io/phase": "Finished",
        "host.faultmesh.io/outcome": "Aborted",
        "host.faultmesh.io/reason": "probe web-health failed 3 times",
        "host.faultmesh.io/finished-at": "2026-11-18T11:08:15Z",
    }
    assert obj["status"] == shown.status
    assert obj["spec"] == shown.manifest["spec"]
    # the stored manifest is not touched
    assert "uid" not in shown.manifest["metadata"]


def test_the_object_loads_back_as_a_manifest() -> None:
    obj = experiment_object(row(status=status("Injected", "Not Injected")))
    (loaded,) = load_text(yaml.safe_dump(obj)).objects
    assert loaded.to_dict()["status"] == obj["status"]
    assert loaded.metadata.uid == obj["metadata"]["uid"]


def test_a_row_without_status_has_no_status_key() -> None:
    assert "status" not in experiment_object(row(status={}))


def test_list_object_wraps_items_like_kubectl() -> None:
    assert list_object([{"a": 1}]) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"a": 1}],
        "metadata": {"resourceVersion": ""},
    }


def schedule_row(**changes: Any) -> ScheduleRow:
    base = ScheduleRow(
        uid="sched-uid",
        namespace="demo",
        name="nightly-kill",
        manifest={
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": "nightly-kill", "namespace": "demo"},
            "spec": {
                "schedule": "@every 5m",
                "type": "PodChaos",
                "historyLimit": 2,
                "podChaos": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": ["demo"]}},
            },
        },
        created_at=NOW - 3600,
        paused=False,
        status={
            "active": [{"kind": "PodChaos", "name": "nightly-kill-x1", "namespace": "demo"}],
            "time": "2026-11-18T11:06:40Z",
        },
        owner="serve:77",
    )
    return dataclasses.replace(base, **changes)


def test_schedule_object() -> None:
    obj = schedule_object(schedule_row(paused=True))
    assert obj["kind"] == "Schedule"
    assert obj["metadata"]["annotations"] == {PAUSE_ANNOTATION: "true", "host.faultmesh.io/owner": "serve:77"}
    assert obj["status"]["active"][0]["name"] == "nightly-kill-x1"


# ---- tables and describe ------------------------------------------------------------------------------


def test_experiments_table() -> None:
    rows = [
        row("web-partition", status=status("Injected", "Not Injected")),
        row("burn", kind="StressChaos", status={}, finished_at=NOW - 60, outcome="Completed", created_at=NOW - 4000),
    ]
    lines = text_of(experiments_table(rows, NOW)).splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND", "NAME", "PHASE", "TARGETS", "AGE", "OUTCOME"]
    assert lines[1].split() == ["demo", "NetworkChaos", "web-partition", "Injecting", "1/2", "3m20s", "-"]
    assert lines[2].split() == ["demo", "StressChaos", "burn", "Finished", "0/0", "66m", "Completed"]


def test_schedules_table() -> None:
    lines = text_of(schedules_table([schedule_row()], NOW)).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "SCHEDULE", "TYPE", "ACTIVE", "LAST", "SCHEDULE", "PAUSED", "AGE"]
    assert lines[1].split() == ["demo", "nightly-kill", "@every", "5m", "PodChaos", "1", "100s", "false", "60m"]


def test_describe_shows_spec_records_conditions_and_events() -> None:
    shown = row(
        status=status("Injected", "Not Injected")
        | {
            "experiment": {
                "desiredPhase": "Run",
                "containerRecords": [
                    record(
                        "demo/web",
                        "Injected",
                        events=[
                            {"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-18T11:06:40Z"},
                            {"type": "Failed", "operation": "Apply", "timestamp": "bad", "message": "netns gone"},
                        ],
                    ),
                    record("demo/db", "Not Injected", injectedCount=0),
                ],
            }
        }
    )
    events = [
        EventRow(shown.uid, NOW - 190, "Normal", "Applied", "injected into demo/web"),
        EventRow(shown.uid, NOW - 100, "Warning", "Failed", "could not inject into demo/db: no such netns"),
    ]
    text = describe_experiment(shown, events, NOW).plain
    expected = """\
Name:         web-partition
Namespace:    demo
Labels:       team=sre
Annotations:  <none>
API Version:  chaos-mesh.org/v1alpha1
Kind:         NetworkChaos
UID:          uid-NetworkChaos-demo-web-partition
Created:      2026-11-18T11:05:00Z (3m20s ago)
Phase:        Injecting
Targets:      1/2 injected
Paused:       false
Run:          networkchaos-web-partition-20261122-081500-ab12 (runs/networkchaos-web-partition-20261122-081500-ab12)
Driven By:    run:4242
Spec:
  Action:  partition
  Mode:    all
  Selector:
    Namespaces:       demo
    Label Selectors:  app=web
                      tier=front
  Direction:  to
  Target:
    Mode:  all
    Selector:
      Namespaces:       demo
      Label Selectors:  app=db
  Duration:  30s
Status:
  Desired Phase:  Run
  Conditions:
    Type         Status  Reason
    ----         ------  ------
    Selected     True
    AllInjected  False
    Paused       False
  Container Records:
    demo/web:
      Selector Key:     .
      Phase:            Injected
      Injected Count:   1
      Recovered Count:  0
      Events:
        Type       Operation  Age   Message
        ----       ---------  ---   -------
        Succeeded  Apply      100s
        Failed     Apply      bad   netns gone
    demo/db:
      Selector Key:     .
      Phase:            Not Injected
      Injected Count:   0
      Recovered Count:  0
      Events:           <none>
Events:
  Type     Reason   Age    Message
  ----     ------   ---    -------
  Normal   Applied  3m10s  injected into demo/web
  Warning  Failed   100s   could not inject into demo/db: no such netns"""
    assert text == expected


def test_describe_a_finished_experiment_without_status() -> None:
    shown = row(
        status={},
        finished_at=NOW - 60,
        outcome="Interrupted",
        reason="runner was killed",
        owner="",
        delete_requested_at=NOW - 70,
    )
    text = describe_experiment(shown, [], NOW).plain
    assert "Outcome:           Interrupted: runner was killed" in text
    assert "Finished:          2026-11-18T11:07:20Z (60s ago)" in text
    assert "Delete Requested:  2026-11-18T11:07:10Z (70s ago)" in text
    assert "Driven By:         <nobody>" in text
    assert "  Conditions:         <none>\n  Container Records:  <none>\nEvents:  <none>" in text


def test_describe_schedule_lists_what_it_made() -> None:
    schedule = schedule_row()
    owned = dataclasses.replace(
        row("nightly-kill-x1", kind="PodChaos"),
        manifest={"metadata": {"ownerReferences": [{"kind": "Schedule", "uid": "sched-uid", "name": "nightly-kill"}]}},
    )
    stranger = row("other", kind="PodChaos")
    made = made_by(schedule, [owned, stranger])
    assert made == [owned]
    text = describe_schedule(schedule, made, NOW).plain
    assert "Schedule:       @every 5m" in text
    assert "Last Schedule Time:  2026-11-18T11:06:40Z (100s ago)" in text
    assert "Active:              PodChaos/nightly-kill-x1" in text
    assert "  PodChaos  nightly-kill-x1  Running  3m20s  -" in text


# ---- the commands -------------------------------------------------------------------------------------


def app() -> typer.Typer:
    commands = typer.Typer(pretty_exceptions_enable=False)
    commands.command("get")(get_command)
    commands.command("describe")(describe_command)
    return commands


@pytest.fixture
def state(tmp_path: Path) -> Path:
    now = time.time()
    with Store.open(tmp_path) as store:
        store.create(row("web", created_at=now - 30, status=status("Injected")))
        store.create(row("web", namespace="prod", created_at=now - 20, status={}, owner=""))
        store.create(row("web", kind="StressChaos", created_at=now - 10))
        store.create(row("a-very-long-experiment-name-that-does-not-fit-eighty-columns", created_at=now - 40))
        store.add_event("uid-NetworkChaos-demo-web", now - 5, "Warning", "Failed", "something broke")
        store.create_schedule(schedule_row(created_at=now - 50))
    return tmp_path


def run(state: Path, *args: str) -> Any:
    result = CliRunner().invoke(app(), [*args, "--state-dir", str(state)])
    assert "Traceback" not in result.output
    return result


def test_get_lists_everything_newest_first_with_schedules_after(state: Path) -> None:
    result = run(state, "get")
    assert result.exit_code == 0, result.output
    names = [line.split()[:3] for line in result.stdout.splitlines() if line.startswith(("demo", "prod"))]
    assert names == [
        ["demo", "StressChaos", "web"],
        ["prod", "NetworkChaos", "web"],
        ["demo", "NetworkChaos", "web"],
        ["demo", "NetworkChaos", "a-very-long-experiment-name-that-does-not-fit-eighty-columns"],
        ["demo", "nightly-kill", "@every"],
    ]


def test_get_filters_by_kind_and_namespace(state: Path) -> None:
    result = run(state, "get", "networkchaos", "-n", "prod")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[1:]
    assert [line.split() for line in rows] == [["prod", "NetworkChaos", "web", "Pending", "0/0", "20s", "-"]]
    schedules = run(state, "get", "schedules")
    assert schedules.stdout.splitlines()[1].split()[:2] == ["demo", "nightly-kill"]


def test_get_one_object_as_yaml_and_a_list_as_json(state: Path) -> None:
    single = run(state, "get", "NetworkChaos", "web", "-n", "demo", "-o", "yaml")
    assert single.exit_code == 0, single.output
    obj = yaml.safe_load(single.stdout)
    assert obj["kind"] == "NetworkChaos"
    assert obj["metadata"]["namespace"] == "demo"
    assert obj["status"]["experiment"]["containerRecords"][0]["phase"] == "Injected"
    listed = run(state, "get", "networkchaos", "web", "-o", "json")
    document = json.loads(listed.stdout)
    assert document["kind"] == "List"
    assert sorted(item["metadata"]["namespace"] for item in document["items"]) == ["demo", "prod"]


def test_get_nothing_says_so(tmp_path: Path, state: Path) -> None:
    empty = run(tmp_path / "fresh", "get")
    assert empty.exit_code == 0
    assert empty.stdout == ""
    assert "No experiments found." in empty.stderr
    assert not (tmp_path / "fresh" / DB_NAME).exists()  # a read command creates no store
    none_here = run(state, "get", "podchaos", "-n", "demo")
    assert none_here.exit_code == 0
    assert "No podchaos found in namespace demo." in none_here.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("get", "netwrokchaos"), '"netwrokchaos" is not an experiment kind; did you mean "NetworkChaos"?'),
        (("get", "-n", "demo", "-A"), "give either -n NAMESPACE or -A, not both"),
        (("get", "podchaos", "ghost"), "podchaos ghost not found"),
        (("describe", "ghost"), "experiment ghost not found; known: "),
        (("describe", "web"), "narrow it with -n NAMESPACE or --kind KIND"),
        (("describe", "web", "--kind", "wat"), '"wat" is not an experiment kind'),
        (("describe", "web", "-n", "demo"), "NetworkChaos/demo/web, StressChaos/demo/web"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(state: Path, args: tuple[str, ...], message: str) -> None:
    result = run(state, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_describe_by_name_narrowed_to_one(state: Path) -> None:
    result = run(state, "describe", "web", "-n", "demo", "--kind", "networkchaos")
    assert result.exit_code == 0, result.output
    assert "Kind:         NetworkChaos" in result.stdout
    assert "Warning  Failed  " in result.stdout
    only_prod = run(state, "describe", "web", "-n", "prod")
    assert "Namespace:    prod" in only_prod.stdout
    schedule = run(state, "describe", "nightly-kill")
    assert schedule.exit_code == 0, schedule.output
    assert "Kind:         Schedule" in schedule.stdout


def test_describe_on_a_fresh_state_dir(tmp_path: Path) -> None:
    result = run(tmp_path, "describe", "web")
    assert result.exit_code == 2
    assert f"web not found; nothing is recorded in {tmp_path} yet" in result.stderr


def test_a_damaged_store_is_exit_1_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"garbage" * 1000)
    for args in (("get",), ("describe", "web")):
        result = run(tmp_path, *args)
        assert result.exit_code == 1
        assert f"{tmp_path / DB_NAME}: not a faultmesh store or damaged" in result.stderr


def test_long_names_are_not_cut_in_a_pipe(state: Path) -> None:
    result = run(state, "get", "-n", "demo")
    assert "a-very-long-experiment-name-that-does-not-fit-eighty-columns" in result.stdout


def test_an_unreadable_state_dir_is_exit_1_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Path.exists

    def denied(path: Path, *args: Any, **kwargs: Any) -> bool:
        if path.name == DB_NAME:
            raise PermissionError(13, "Permission denied")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", denied)
    result = run(tmp_path, "get")
    assert result.exit_code == 1
    assert f"cannot read state dir {tmp_path}: Permission denied (run as root, or give --state-dir)" in result.stderr
