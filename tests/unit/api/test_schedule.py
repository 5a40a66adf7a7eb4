"""Schedule: the embedded experiment (checked by its kind's own rules), cron, defaults, SDK use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.embed import EMBEDDED_KINDS, EmbedChaos
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object
from faultmesh.api.podchaos import PodChaosSpec
from faultmesh.api.registry import kinds
from faultmesh.api.schedule import Schedule, ScheduleSpec

POD_KILL: dict[str, Any] = {
    "action": "pod-kill",
    "mode": "one",
    "selector": {"labelSelectors": {"app": "web"}},
}
WORKFLOW: dict[str, Any] = {
    "entry": "pause",
    "templates": [{"name": "pause", "templateType": "Suspend", "deadline": "10s"}],
}


def _schedule(spec: dict[str, Any], namespace: str | None = "shop") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "every-minute"}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule", "metadata": metadata, "spec": spec}


def _pod_kill_schedule(**extra: Any) -> dict[str, Any]:
    return _schedule({"schedule": "@every 1m", "type": "PodChaos", "podChaos": POD_KILL, **extra})


def _load(data: dict[str, Any]) -> Schedule:
    obj = parse_object(data)
    assert isinstance(obj, Schedule)
    return obj


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def test_every_chaos_kind_can_be_embedded() -> None:
    fields = {info.alias for info in EmbedChaos.model_fields.values()}
    assert fields == set(EMBEDDED_KINDS.values())
    registered = kinds()
    for kind, wire_name in EMBEDDED_KINDS.items():
        spec_class: Any = registered[kind].model_fields["spec"].annotation
        field = next(info for info in EmbedChaos.model_fields.values() if info.alias == wire_name)
        assert field.annotation == spec_class | None, kind


def test_concurrency_policy_defaults_to_forbid() -> None:
    schedule = _load(_pod_kill_schedule())
    assert schedule.spec.concurrency_policy == "Forbid"
    assert schedule.to_dict()["spec"]["concurrencyPolicy"] == "Forbid"


def test_embedded_selector_namespace_defaults_to_the_schedules() -> None:
    schedule = _load(_pod_kill_schedule())
    assert schedule.spec.pod_chaos is not None
    assert schedule.spec.pod_chaos.selector.namespaces == ["shop"]
    # Without a namespace of its own, the loader's default namespace applies.
    schedule = _load(
        _schedule({"schedule": "@hourly", "type": "PodChaos", "podChaos": POD_KILL}, namespace=None)
    )
    assert schedule.spec.pod_chaos is not None
    assert schedule.spec.pod_chaos.selector.namespaces == ["default"]


def test_given_selector_namespaces_are_kept() -> None:
    pod_kill = {**POD_KILL, "selector": {"namespaces": ["other"], "labelSelectors": {"app": "web"}}}
    schedule = _load(_schedule({"schedule": "@hourly", "type": "PodChaos", "podChaos": pod_kill}))
    assert schedule.spec.pod_chaos is not None
    assert schedule.spec.pod_chaos.selector.namespaces == ["other"]


def test_embedded_spec_is_checked_with_its_kinds_rules() -> None:
    pod_chaos = {**POD_KILL, "action": "container-kill", "mode": "fixed", "value": "0"}
    problems = _problems(_schedule({"schedule": "@hourly", "type": "PodChaos", "podChaos": pod_chaos}))
    assert problems == {
        "spec.podChaos.value": '"0" must be greater than 0 with mode fixed',
        "spec.podChaos.containerNames": "is required with action container-kill",
    }


def test_embedded_spec_grammar_errors_have_the_embedded_path() -> None:
    problems = _problems(_pod_kill_schedule(podChaos={**POD_KILL, "action": "pod-explode"}))
    assert list(problems) == ["spec.podChaos.action"]
    problems = _problems(_pod_kill_schedule(podChaos={**POD_KILL, "gracePeriodd": 5}))
    assert "did you mean" in problems["spec.podChaos.gracePeriodd"]


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"schedule": "* * * * 8"}, "spec.schedule", 'day of week "8"'),
        ({"schedule": ""}, "spec.schedule", "is empty"),
        ({"type": "Podchaos"}, "spec.type", '"Podchaos" is not a schedule type'),
        ({"type": "Schedule"}, "spec.type", "is not a schedule type"),
        ({"type": "NetworkChaos"}, "spec.networkChaos", "is required with type NetworkChaos"),
        ({"type": "Workflow"}, "spec.workflow", "is required with type Workflow"),
        ({"historyLimit": 0}, "spec.historyLimit", "greater than or equal to 1"),
        ({"startingDeadlineSeconds": 0}, "spec.startingDeadlineSeconds", "greater than 0"),
        ({"startingDeadlineSeconds": -3}, "spec.startingDeadlineSeconds", "greater than 0"),
        ({"concurrencyPolicy": "Replace"}, "spec.concurrencyPolicy", "is not one of 'Forbid' or 'Allow'"),
    ],
)
def test_schedule_rules(spec: dict[str, Any], path: str, message: str) -> None:
    problems = _problems(_pod_kill_schedule(**spec))
    assert message in problems[path]


@pytest.mark.parametrize(
    "spec",
    [
        {"historyLimit": 1},
        {"startingDeadlineSeconds": 1},
        {"concurrencyPolicy": "Allow"},
        {"schedule": "0 */2 * * 1-5"},
        {"schedule": "30 0 */2 * * *"},
        {"schedule": "CRON_TZ=Europe/Berlin @daily"},
    ],
)
def test_schedule_rules_accept(spec: dict[str, Any]) -> None:
    _load(_pod_kill_schedule(**spec))


def test_required_fields() -> None:
    problems = _problems(_schedule({"podChaos": POD_KILL}))
    assert problems == {"spec.schedule": "is required", "spec.type": "is required"}


def test_a_workflow_schedule_checks_the_workflow() -> None:
    schedule = _load(_schedule({"schedule": "@daily", "type": "Workflow", "workflow": WORKFLOW}))
    assert schedule.spec.workflow is not None
    bad = {**WORKFLOW, "entry": "missing"}
    problems = _problems(_schedule({"schedule": "@daily", "type": "Workflow", "workflow": bad}))
    assert '"missing" names no template' in problems["spec.workflow.entry"]


def test_other_embedded_specs_are_carried_but_not_required() -> None:
    # Chaos Mesh ignores specs of kinds other than `type`; so does faultmesh (they round-trip).
    stress = {"mode": "one", "selector": {}, "stressors": {"cpu": {"workers": 1}}}
    schedule = _load(_pod_kill_schedule(stressChaos=stress))
    assert schedule.spec.embedded_kinds() == ["PodChaos", "StressChaos"]
    assert schedule.spec.chaos_spec("PodChaos") is schedule.spec.pod_chaos


def test_next_runs_come_from_the_spec() -> None:
    schedule = _load(_pod_kill_schedule(schedule="*/20 * * * *"))
    runs = schedule.spec.cron().next_runs(datetime(2024, 1, 1, tzinfo=UTC), 2)
    assert runs == [datetime(2024, 1, 1, 0, 20, tzinfo=UTC), datetime(2024, 1, 1, 0, 40, tzinfo=UTC)]


def test_pause_annotation() -> None:
    data = _pod_kill_schedule()
    assert not _load(data).is_paused()
    data["metadata"]["annotations"] = {"experiment.chaos-mesh.org/pause": "true"}
    assert _load(data).is_paused()


def test_status_round_trips() -> None:
    status = {
        "active": [
            {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos", "name": "x-1", "namespace": "shop"}
        ],
        "time": "2024-05-01T10:00:00Z",
    }
    schedule = _load({**_pod_kill_schedule(), "status": status})
    assert schedule.status is not None and schedule.status.last_schedule_time == "2024-05-01T10:00:00Z"
    assert schedule.to_dict()["status"] == status


def test_sdk_round_trip() -> None:
    schedule = Schedule(
        metadata=ObjectMeta(name="kill-web", namespace="shop"),
        spec=ScheduleSpec(
            schedule="@every 30s",
            type="PodChaos",
            history_limit=3,
            pod_chaos=PodChaosSpec(
                action="pod-kill", mode="one", selector=PodSelectorSpec(label_selectors={"app": "web"})
            ),
        ),
    )
    assert validate_object(schedule) == []
    data = schedule.to_dict()
    assert data["spec"]["podChaos"]["selector"]["namespaces"] == ["shop"]
    assert data["spec"]["historyLimit"] == 3
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert again.to_dict() == data


def test_crd_bounds_use_openapi_v3_0_spelling() -> None:
    spec = crd_for(Schedule)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    deadline = spec["properties"]["startingDeadlineSeconds"]
    assert (deadline["minimum"], deadline["exclusiveMinimum"], deadline["format"]) == (0, True, "int64")
    assert spec["properties"]["concurrencyPolicy"]["default"] == "Forbid"
