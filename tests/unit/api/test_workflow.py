"""Workflow and WorkflowNode: the template rules, the embedded Kubernetes types, SDK use."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.crd import crd_for
from faultmesh.api.k8s.core import Container, ContainerPort
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object
from faultmesh.api.workflow import Task, Template, Workflow, WorkflowSpec
from faultmesh.api.workflownode import WorkflowNode

REPO = Path(__file__).resolve().parents[3]
REFERENCE_CRDS = REPO.parent / "shared" / "reference" / "chaos-mesh" / "crd"

SELECTOR: dict[str, Any] = {"labelSelectors": {"app": "web"}}
POD_KILL: dict[str, Any] = {"action": "pod-kill", "mode": "one", "selector": SELECTOR}
DELAY: dict[str, Any] = {"action": "delay", "mode": "all", "selector": SELECTOR, "delay": {"latency": "90ms"}}
HTTP_CHECK: dict[str, Any] = {"http": {"url": "http://10.0.0.1/", "criteria": {"statusCode": "200"}}}
PAUSE: dict[str, Any] = {"name": "pause", "templateType": "Suspend", "deadline": "10s"}
CONTAINER: dict[str, Any] = {"name": "main", "image": "busybox", "command": ["echo", "hi"]}


def _workflow(templates: list[dict[str, Any]], entry: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf", "namespace": "shop"},
        "spec": {"entry": entry if entry is not None else templates[0]["name"], "templates": templates},
    }


def _load(data: dict[str, Any]) -> Workflow:
    obj = parse_object(data)
    assert isinstance(obj, Workflow)
    return obj


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def _serial(*children: str) -> dict[str, Any]:
    return {"name": "the-entry", "templateType": "Serial", "deadline": "5m", "children": list(children)}


# --- templates that are fine ---------------------------------------------------------------


def test_every_template_type_in_one_workflow() -> None:
    templates = [
        _serial("pause", "kill", "delay", "check", "kill-often", "probe", "side-by-side"),
        PAUSE,
        {"name": "kill", "templateType": "PodChaos", "deadline": "30s", "podChaos": POD_KILL},
        {"name": "delay", "templateType": "NetworkChaos", "deadline": "30s", "networkChaos": DELAY},
        {
            "name": "check",
            "templateType": "StatusCheck",
            "deadline": "1m",
            "statusCheck": HTTP_CHECK,
            "abortWithStatusCheck": True,
        },
        {
            "name": "kill-often",
            "templateType": "Schedule",
            "deadline": "1m",
            "schedule": {"schedule": "@every 10s", "type": "PodChaos", "podChaos": POD_KILL},
        },
        {
            "name": "probe",
            "templateType": "Task",
            "task": {"container": CONTAINER},
            "conditionalBranches": [{"target": "pause", "expression": "exitCode == 0"}, {"target": "kill"}],
        },
        {"name": "side-by-side", "templateType": "Parallel", "children": ["pause", "kill"]},
    ]
    workflow = _load(_workflow(templates))
    assert [template.template_type for template in workflow.spec.templates][:3] == [
        "Serial",
        "Suspend",
        "PodChaos",
    ]


def test_embedded_selector_namespaces_default_to_the_workflows() -> None:
    templates = [
        _serial("kill", "kill-often"),
        {"name": "kill", "templateType": "PodChaos", "deadline": "30s", "podChaos": POD_KILL},
        {
            "name": "kill-often",
            "templateType": "Schedule",
            "deadline": "1m",
            "schedule": {"schedule": "@every 10s", "type": "PodChaos", "podChaos": POD_KILL},
        },
    ]
    workflow = _load(_workflow(templates))
    kill, kill_often = workflow.spec.templates[1], workflow.spec.templates[2]
    assert kill.pod_chaos is not None and kill.pod_chaos.selector.namespaces == ["shop"]
    assert kill_often.schedule is not None and kill_often.schedule.pod_chaos is not None
    assert kill_often.schedule.pod_chaos.selector.namespaces == ["shop"]


def test_status_check_template_gets_chaos_mesh_defaults() -> None:
    templates = [{"name": "check", "templateType": "StatusCheck", "statusCheck": HTTP_CHECK}]
    check = _load(_workflow(templates)).spec.templates[0].status_check
    assert check is not None
    assert (check.mode, check.type, check.failure_threshold, check.interval_seconds) == (
        "Synchronous",
        "HTTP",
        3,
        10,
    )


def test_a_task_may_branch_back_to_itself_as_a_retry() -> None:
    retry = {
        "name": "probe",
        "templateType": "Task",
        "task": {"container": CONTAINER},
        "conditionalBranches": [{"target": "probe", "expression": "exitCode != 0"}],
    }
    _load(_workflow([retry]))


def test_a_template_may_be_used_twice() -> None:
    _load(_workflow([_serial("pause", "pause"), PAUSE]))


# --- rules ---------------------------------------------------------------------------------


def test_entry_must_name_a_template() -> None:
    assert _problems(_workflow([PAUSE], entry="start")) == {
        "spec.entry": '"start" names no template (templates: "pause")'
    }
    assert "is required" in _problems(_workflow([PAUSE], entry=""))["spec.entry"]


def test_templates_must_not_be_empty() -> None:
    data = _workflow([PAUSE])
    data["spec"]["templates"] = []
    problems = _problems(data)
    assert problems["spec.templates"] == "must hold at least one template"


def test_template_names_are_unique() -> None:
    problems = _problems(_workflow([PAUSE, {**PAUSE, "deadline": "20s"}]))
    assert problems == {
        "spec.templates[1].name": '"pause" is used by an earlier template; names must be unique'
    }


@pytest.mark.parametrize("name", ["Pause", "pause_1", "-pause", "pause-", "a" * 254])
def test_template_names_are_dns_subdomains(name: str) -> None:
    problems = _problems(_workflow([{**PAUSE, "name": name}]))
    assert (
        "DNS-1123" in problems["spec.templates[0].name"]
        or "longer than 253" in problems["spec.templates[0].name"]
    )


@pytest.mark.parametrize("name", ["pause", "pause-1", "a.b", "0"])
def test_good_template_names(name: str) -> None:
    _load(_workflow([{**PAUSE, "name": name}]))


def test_references_must_name_templates() -> None:
    probe = {
        "name": "probe",
        "templateType": "Task",
        "task": {"container": CONTAINER},
        "conditionalBranches": [{"target": "nowhere"}],
    }
    problems = _problems(_workflow([_serial("pause", "ghost", "probe"), PAUSE, probe]))
    assert set(problems) == {
        "spec.templates[0].children[1]",
        "spec.templates[2].conditionalBranches[0].target",
    }
    assert problems["spec.templates[0].children[1]"].startswith('"ghost" names no template')


def test_loops_of_children_are_refused() -> None:
    templates = [
        _serial("inner"),
        {"name": "inner", "templateType": "Parallel", "children": ["pause", "the-entry"]},
        PAUSE,
    ]
    problems = _problems(_workflow(templates))
    assert problems == {
        "spec.templates[0]": 'template "the-entry" leads back to itself (the-entry → inner → the-entry)'
    }
    problems = _problems(_workflow([_serial("the-entry")]))
    assert "leads back to itself (the-entry → the-entry)" in problems["spec.templates[0]"]


def test_template_type_must_be_known() -> None:
    problems = _problems(_workflow([{**PAUSE, "templateType": "Pause"}]))
    assert problems["spec.templates[0].templateType"].startswith(
        '"Pause" is not a template type; use one of Task'
    )


def test_a_workflow_template_cannot_be_a_workflow() -> None:
    problems = _problems(_workflow([{**PAUSE, "templateType": "Workflow"}]))
    assert "is not a template type" in problems["spec.templates[0].templateType"]


@pytest.mark.parametrize("deadline", [None, ""])
def test_suspend_needs_a_deadline(deadline: str | None) -> None:
    pause = {"name": "pause", "templateType": "Suspend"}
    if deadline is not None:
        pause["deadline"] = deadline
    problems = _problems(_workflow([pause]))
    assert problems == {
        "spec.templates[0].deadline": "is required with templateType Suspend (how long to pause)"
    }


def test_deadlines_are_durations() -> None:
    assert (
        "is not a duration"
        in _problems(_workflow([{**PAUSE, "deadline": "ten seconds"}]))["spec.templates[0].deadline"]
    )
    assert "is negative" in _problems(_workflow([{**PAUSE, "deadline": "-5s"}]))["spec.templates[0].deadline"]


def test_chaos_templates_need_their_spec_and_no_duration() -> None:
    problems = _problems(_workflow([{"name": "kill", "templateType": "PodChaos", "deadline": "1m"}]))
    assert problems == {
        "spec.templates[0].podChaos": "is required with templateType PodChaos (the PodChaos spec)"
    }
    timed = {"name": "kill", "templateType": "PodChaos", "podChaos": {**POD_KILL, "duration": "30s"}}
    problems = _problems(_workflow([timed]))
    message = "must not be set in a workflow; give the template a deadline instead"
    assert problems == {"spec.templates[0].podChaos.duration": message}


def test_chaos_templates_are_checked_with_their_kinds_rules() -> None:
    broken = {
        "name": "delay",
        "templateType": "NetworkChaos",
        "networkChaos": {**DELAY, "mode": "fixed-percent"},
    }
    problems = _problems(_workflow([broken]))
    assert list(problems) == ["spec.templates[0].networkChaos.value"]


@pytest.mark.parametrize(
    ("template", "path", "message"),
    [
        ({"name": "probe", "templateType": "Task"}, "task", "is required with templateType Task"),
        (
            {"name": "probe", "templateType": "Task", "task": {}},
            "task.container",
            "is required with templateType Task",
        ),
        (
            {"name": "s", "templateType": "Schedule", "deadline": "1m"},
            "schedule",
            "is required with templateType Schedule",
        ),
        (
            {"name": "c", "templateType": "StatusCheck"},
            "statusCheck",
            "is required with templateType StatusCheck",
        ),
        (
            {"name": "c", "templateType": "StatusCheck", "statusCheck": {"type": "HTTP"}},
            "statusCheck.http",
            "is required with type HTTP",
        ),
        ({**PAUSE, "task": {"container": CONTAINER}}, "task", "is not used by templateType Suspend"),
        ({**PAUSE, "children": ["pause"]}, "children", "is not used by templateType Suspend"),
        (
            {**PAUSE, "conditionalBranches": [{"target": "pause"}]},
            "conditionalBranches",
            "is not used by templateType Suspend",
        ),
        ({**PAUSE, "podChaos": POD_KILL}, "podChaos", "only chaos templates embed a spec"),
        (
            {
                "name": "p",
                "templateType": "Parallel",
                "schedule": {"schedule": "@hourly", "type": "PodChaos", "podChaos": POD_KILL},
            },
            "schedule",
            "is not used by templateType Parallel",
        ),
        (
            {"name": "k", "templateType": "PodChaos", "podChaos": POD_KILL, "children": ["pause"]},
            "children",
            "is not used by templateType PodChaos",
        ),
        (
            {
                "name": "s",
                "templateType": "Schedule",
                "schedule": {"schedule": "@hourly", "type": "Workflow"},
            },
            "schedule.type",
            '"Workflow" is not a schedule type',
        ),
        (
            {
                "name": "s",
                "templateType": "Schedule",
                "schedule": {"schedule": "@hourly", "type": "PodChaos"},
            },
            "schedule.podChaos",
            "is required with type PodChaos",
        ),
        (
            {
                "name": "s",
                "templateType": "Schedule",
                "schedule": {
                    "schedule": "@every 1m",
                    "type": "PodChaos",
                    "podChaos": POD_KILL,
                    "startingDeadlineSeconds": -1,
                },
            },
            "schedule.startingDeadlineSeconds",
            "greater than or equal to 0",
        ),
    ],
)
def test_template_content_rules(template: dict[str, Any], path: str, message: str) -> None:
    problems = _problems(_workflow([template, PAUSE]))
    assert message in problems[f"spec.templates[0].{path}"], problems


# --- the embedded Kubernetes types ---------------------------------------------------------


FULL_TASK: dict[str, Any] = {
    "container": {
        "name": "main",
        "image": "curlimages/curl",
        "command": ["curl", "-XPOST", "https://example.invalid/notify"],
        "env": [
            {"name": "MODE", "value": "chaos"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "notify", "key": "token"}}},
        ],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": 8080}},
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "0.1"}},
        "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/notify"}],
    },
    "volumes": [
        {"name": "config", "configMap": {"name": "notify", "items": [{"key": "url", "path": "url"}]}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
    ],
    "labels": {"team": "sre"},
}


def test_a_full_task_round_trips_with_kubernetes_defaults() -> None:
    templates = [{"name": "notify", "templateType": "Task", "task": FULL_TASK}]
    workflow = _load(_workflow(templates))
    task = workflow.to_dict()["spec"]["templates"][0]["task"]
    assert task["container"]["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert task["container"]["readinessProbe"]["httpGet"]["port"] == "http"
    assert task["container"]["livenessProbe"]["tcpSocket"]["port"] == 8080
    assert task["container"]["env"][2]["valueFrom"]["secretKeyRef"] == {"name": "notify", "key": "token"}
    assert task["volumes"][1]["emptyDir"] == {"sizeLimit": "1Gi"}
    again = load_text(yaml.safe_dump(workflow.to_dict())).objects[0]
    assert again.to_dict() == workflow.to_dict()


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"image": 5}, "container.image", "is not a string"),
        ({"ports": [{"name": "http"}]}, "container.ports[0].containerPort", "is required"),
        ({"resources": {"limits": {"cpu": "half"}}}, "container.resources.limits.cpu", "is not a quantity"),
        (
            {"resources": {"limits": {"cpu": 0.5}}},
            "container.resources.limits.cpu",
            "write it as an integer or a string",
        ),
        (
            {"livenessProbe": {"tcpSocket": {"port": 80.5}}},
            "container.livenessProbe.tcpSocket.port",
            "80.5 is not an integer or a string",
        ),
        (
            {"securityContext": {"runAsUser": "root"}},
            "container.securityContext.runAsUser",
            "is not an integer",
        ),
        ({"imagePullPolice": "Always"}, "container.imagePullPolice", 'did you mean "imagePullPolicy"'),
    ],
)
def test_container_fields_are_checked(change: dict[str, Any], path: str, message: str) -> None:
    task = {"container": {**CONTAINER, **change}}
    problems = _problems(_workflow([{"name": "probe", "templateType": "Task", "task": task}]))
    assert message in problems[f"spec.templates[0].task.{path}"], problems


def test_generated_kubernetes_module_is_up_to_date() -> None:
    location = REPO / "tools" / "gen_k8s_core.py"
    generator = runpy.run_path(str(location), run_name="gen_k8s_core")
    committed = (REPO / "src" / "faultmesh" / "api" / "k8s" / "core.py").read_text()
    assert generator["generate"](REFERENCE_CRDS) == committed, "run tools/gen_k8s_core.py"


def test_int_or_string_fields_stay_int_or_string_in_the_crd() -> None:
    schema = crd_for(Workflow)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    container = schema["properties"]["spec"]["properties"]["templates"]["items"]["properties"]["task"][
        "properties"
    ]["container"]
    port = container["properties"]["readinessProbe"]["properties"]["httpGet"]["properties"]["port"]
    assert port == {"x-kubernetes-int-or-string": True}
    cpu = container["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert cpu["x-kubernetes-int-or-string"] is True and "pattern" in cpu
    assert crd_for(Workflow)["spec"]["names"]["shortNames"] == ["wf"]


# --- SDK -----------------------------------------------------------------------------------


def test_sdk_round_trip() -> None:
    workflow = Workflow(
        metadata=ObjectMeta(name="probe-then-pause", namespace="shop"),
        spec=WorkflowSpec(
            entry="the-entry",
            templates=[
                Template(name="the-entry", template_type="Serial", children=["probe", "pause"]),
                Template(
                    name="probe",
                    template_type="Task",
                    task=Task(
                        container=Container(
                            name="main", image="busybox", ports=[ContainerPort(container_port=80)]
                        )
                    ),
                ),
                Template(name="pause", template_type="Suspend", deadline="10s"),
            ],
        ),
    )
    assert validate_object(workflow) == []
    data = workflow.to_dict()
    assert data["spec"]["templates"][1]["templateType"] == "Task"
    assert data["spec"]["templates"][1]["task"]["container"]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert again.to_dict() == data


def test_sdk_problems_have_paths() -> None:
    workflow = Workflow(
        metadata=ObjectMeta(name="wf"),
        spec=WorkflowSpec(entry="pause", templates=[Template(name="pause", template_type="Suspend")]),
    )
    assert [str(issue) for issue in validate_object(workflow)] == [
        "spec.templates[0].deadline: is required with templateType Suspend (how long to pause)"
    ]


# --- WorkflowNode --------------------------------------------------------------------------


def _node(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "WorkflowNode",
        "metadata": {
            "name": "wf-kill-x7k2p",
            "namespace": "shop",
            "labels": {"chaos-mesh.org/workflow": "wf"},
        },
        "spec": {"templateName": "kill", "workflowName": "wf", "startTime": "2024-05-01T10:00:00Z", **spec},
    }
    if status is not None:
        data["status"] = status
    return data


def test_workflow_node_round_trips_with_status() -> None:
    status = {
        "chaosResource": {"apiGroup": "chaos-mesh.org", "kind": "PodChaos", "name": "wf-kill-x7k2p-abc"},
        "activeChildren": [{"name": "child-a"}],
        "finishedChildren": [{"name": "child-b"}],
        "conditionalBranchesStatus": {
            "branches": [{"target": "pause", "evaluationResult": "True"}],
            "context": ["exitCode: 0"],
        },
        "conditions": [{"type": "ChaosInjected", "status": "True", "reason": "ChaosCRCreated"}],
    }
    spec = {"type": "PodChaos", "deadline": "2024-05-01T10:01:00Z", "podChaos": POD_KILL}
    node = parse_object(_node(spec, status))
    assert isinstance(node, WorkflowNode)
    assert node.to_dict()["status"] == status
    assert node.spec.pod_chaos is not None and node.spec.pod_chaos.selector.namespaces == ["shop"]
    again = load_text(yaml.safe_dump(node.to_dict())).objects[0]
    assert again.to_dict() == node.to_dict()


def test_workflow_node_schedule_is_a_full_schedule_spec() -> None:
    schedule = {"schedule": "@every 10s", "type": "PodChaos", "podChaos": POD_KILL}
    node = parse_object(_node({"type": "Schedule", "schedule": schedule}))
    assert isinstance(node, WorkflowNode) and node.spec.schedule is not None
    assert node.spec.schedule.concurrency_policy == "Forbid"


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"type": "Sequence"}, "spec.type", '"Sequence" is not a template type'),
        ({"type": "PodChaos"}, "spec.podChaos", "is required with type PodChaos"),
        ({"type": "Suspend", "startTime": "yesterday", "deadline": 5}, "spec.deadline", "is not a string"),
    ],
)
def test_workflow_node_rules(spec: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object(_node(spec))
    problems = {format_path(problem.path): problem.message for problem in caught.value.problems}
    assert message in problems[path]


def test_workflow_node_crd_names() -> None:
    names = crd_for(WorkflowNode)["spec"]["names"]
    assert (names["plural"], names["shortNames"]) == ("workflownodes", ["wfn"])
