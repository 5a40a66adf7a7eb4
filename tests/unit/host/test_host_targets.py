"""Host mode's local targets: the inventory file format, facts to pods, and selection over them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faultmesh.api.loader import load_text
from faultmesh.host import (
    ContainerFacts,
    HostInventoryError,
    HostTargetsError,
    InventoryEntry,
    ProcessFacts,
    build_inventory,
    container_pod,
    inventory_from_facts,
    parse_inventory,
    targets_command,
)
from faultmesh.selection import plan_experiment

NODE = "host-1"


def _problems(text: str) -> list[str]:
    with pytest.raises(HostInventoryError) as caught:
        parse_inventory(text, source="inv.yaml")
    return caught.value.problems


def test_inventory_entries_of_each_kind() -> None:
    entries = parse_inventory(
        """
targets:
  - {namespace: demo, name: web, labels: {app: web}, pid: 42}
  - {name: worker, command: "sleep 3600"}
  - {name: backend, netns: fm-backend}
"""
    )
    assert entries == [
        InventoryEntry("demo", "web", "pid", "42", {"app": "web"}),
        InventoryEntry("default", "worker", "command", "sleep 3600", {}),
        InventoryEntry("default", "backend", "netns", "fm-backend", {}),
    ]


def test_empty_inventory_has_no_entries() -> None:
    assert parse_inventory("") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("targets: [{name: a}]", "inv.yaml: targets[0]: needs exactly one of pid, command, netns (found none)"),
        ("targets: [{name: a, pid: 1, netns: x}]", "netns (found pid, netns)"),
        ("targets: [{name: a, pid: -3}]", "targets[0].pid: -3 is not a positive process id"),
        ("targets: [{name: a, pid: true}]", "targets[0].pid: True is not a positive process id"),
        ("targets: [{pid: 3}]", "targets[0].name: required"),
        ("targets: [{name: a, pid: 3, labels: {app: 'a b'}}]", "targets[0].labels.app: "),
        ("targets: [{name: a, pid: 3, labels: {app: 1}}]", "targets[0].labels.app: keys and values must be strings"),
        ("targets: [{name: a, pid: 3, lables: {}}]", "targets[0].lables: unknown field"),
        ("targets: [{name: a, netns: ../x}]", "targets[0].netns: '../x' is not a netns name"),
        ("targets: [{name: a, command: ''}]", "targets[0].command: must be a non-empty string"),
        ("targets: [{name: a, pid: 3}, {name: a, pid: 4}]", "targets[1].name: default/a is already named by"),
        ("targets: [7]", "targets[0]: must be a mapping"),
        ("targets: {name: a}", "inv.yaml: targets: must be a list"),
        ("- name: a", "inv.yaml: must be a mapping with one key, targets"),
        ("targets: [", "inv.yaml: not valid YAML"),
    ],
)
def test_inventory_errors_name_the_field(text: str, expected: str) -> None:
    assert any(expected in problem for problem in _problems(text)), _problems(text)


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems("targets: [{name: a}, {name: b, pid: 0}]")
    assert len(problems) == 2 and all(problem.startswith("inv.yaml: targets[") for problem in problems)


def test_a_missing_inventory_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(HostTargetsError, match=f"{missing}: no such inventory file"):
        build_inventory(missing, containerd_socket=None, node_name=NODE)


def test_container_facts_become_a_pod() -> None:
    labels = {"app": "web", "io.kubernetes.container.name": "nginx"}
    pod = container_pod(ContainerFacts("web-1", labels, running=True), "default", NODE)
    assert (pod.key, pod.phase, pod.node_name, dict(pod.labels)) == ("default/web-1", "Running", NODE, labels)
    assert [container.name for container in pod.containers] == ["nginx"]
    assert pod.container_id("nginx") == "containerd://web-1"
    stopped = container_pod(ContainerFacts("db-1", {}, running=False), "ns", NODE)
    assert (stopped.phase, stopped.containers[0].name, stopped.container_id("db-1")) == (
        "Pending", "db-1", "containerd://db-1",
    )


def test_process_facts_become_pods_and_unresolved_ones_are_pending_with_a_note() -> None:
    found = ProcessFacts(InventoryEntry("demo", "web", "pid", "42", {"app": "web"}), 42)
    lost = ProcessFacts(InventoryEntry("demo", "gone", "command", "nothing"), None, "no process matches")
    inventory = inventory_from_facts([], [found, lost], "default", NODE)
    web, gone = inventory.pods
    assert (web.phase, web.container_id("web")) == ("Running", "process://42")
    assert (gone.phase, gone.container_id("gone")) == ("Pending", None)
    assert inventory.notes == ("demo/gone: no process matches",)
    assert [node.name for node in inventory.nodes or ()] == [NODE]
    assert [namespace.name for namespace in inventory.namespaces or ()] == ["demo"]


def test_a_name_given_by_both_sources_is_refused() -> None:
    clash = ProcessFacts(InventoryEntry("default", "web", "pid", "1"), 1)
    with pytest.raises(HostTargetsError, match="default/web: named by both containerd and the inventory file"):
        inventory_from_facts([ContainerFacts("web")], [clash], "default", NODE)


POD_KILL = """
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: kill-web, namespace: default}
spec:
  action: container-kill
  mode: all
  containerNames: [nginx]
  selector:
    labelSelectors: {app: web}
"""


def test_a_label_selector_picks_local_targets() -> None:
    web = ContainerFacts("web-1", {"app": "web", "io.kubernetes.container.name": "nginx"}, running=True)
    db = ContainerFacts("db-1", {"app": "db", "io.kubernetes.container.name": "nginx"}, running=True)
    other = ProcessFacts(InventoryEntry("default", "proc", "pid", "7", {"app": "db"}), 7)
    (experiment,) = load_text(POD_KILL).objects
    (plan,) = plan_experiment(experiment, inventory_from_facts([web, db], [other], "default", NODE), seed=1)
    assert [(target.pod.key, target.container_id) for target in plan.selection.containers] == [
        ("default/web-1", "containerd://web-1")
    ]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(targets_command)
    return app


def test_targets_command_lists_processes_as_json_and_notes_a_missing_default_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("faultmesh.host.targets.DEFAULT_SOCKET", tmp_path / "containerd.sock")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"targets: [{{name: me, labels: {{app: test}}, pid: {os.getpid()}}}]")
    result = CliRunner().invoke(_app(), ["--inventory", str(inventory), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert f"no containerd socket at {tmp_path / 'containerd.sock'}" in result.output
    listed = json.loads(result.stdout)
    assert listed == [{
        "namespace": "default", "name": "me", "labels": {"app": "test"}, "phase": "Running",
        "containers": [{"name": "me", "containerID": f"process://{os.getpid()}"}],
    }]


def test_targets_command_table_shows_each_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("faultmesh.host.targets.DEFAULT_SOCKET", tmp_path / "containerd.sock")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"targets: [{{namespace: demo, name: me, labels: {{app: test}}, pid: {os.getpid()}}}]")
    monkeypatch.setenv("COLUMNS", "200")  # rich sizes the table from it; a long PID must not wrap a cell
    result = CliRunner().invoke(_app(), ["--inventory", str(inventory)])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "demo/me" in line]
    assert [cell.strip() for cell in row.strip("│┃ ").split("│")] == [
        "demo/me", "app=test", "me", f"process://{os.getpid()}", "Running"
    ]


def test_targets_command_refuses_an_explicit_socket_that_is_not_there(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["--containerd-socket", str(tmp_path / "absent.sock")])
    assert result.exit_code == 2, result.output
    assert f"--containerd-socket: {tmp_path / 'absent.sock'} does not exist" in result.output
    assert "Traceback" not in result.output


def test_targets_command_refuses_a_malformed_inventory_with_exit_2(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("targets: [{name: a, pid: zero}]")
    result = CliRunner().invoke(_app(), ["--inventory", str(inventory)])
    assert result.exit_code == 2
    assert f"{inventory}: targets[0].pid: 'zero' is not a positive process id" in result.output
    assert "Traceback" not in result.output
