"""The loader: multi-document YAML and JSON, notes for other API groups, errors with document,
field path and line, unknown fields with a hint, defaults, and the update (immutability) rule."""

from __future__ import annotations

import json

import pytest

from faultmesh.api.admission import admit_update
from faultmesh.api.loader import ManifestError, load_text, parse_object
from faultmesh.api.podchaos import PodChaos

POD_KILL = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata:
  name: kill-one
  namespace: shop
spec:
  action: pod-kill
  mode: one
  selector:
    labelSelectors:
      app: web
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text, source="m.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_other_api_groups_are_passed_over_with_a_note() -> None:
    result = load_text(DEPLOYMENT + "---\n" + POD_KILL)
    assert [obj.kind for obj in result.objects] == ["PodChaos"]
    assert result.notes == ["doc 1: passed over Deployment (apps/v1): not a chaos-mesh.org object"]


def test_empty_documents_are_ignored() -> None:
    assert len(load_text("---\n---\n" + POD_KILL + "---\n").objects) == 1


def test_json_input_loads() -> None:
    data = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "j"},
        "spec": {"action": "pod-kill", "mode": "all", "selector": {}},
    }
    assert load_text(json.dumps(data)).objects[0].metadata.name == "j"


def test_kubectl_list_output_is_expanded() -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [load_text(POD_KILL).objects[0].to_dict()] * 2}
    assert len(load_text(json.dumps(listing)).objects) == 2


def test_selector_namespace_defaults_to_the_objects_namespace() -> None:
    obj = load_text(POD_KILL).objects[0]
    assert isinstance(obj, PodChaos)
    assert obj.spec.selector.namespaces == ["shop"]


def test_object_without_namespace_takes_the_context_namespace() -> None:
    obj = load_text(POD_KILL.replace("  namespace: shop\n", ""), namespace="team-a").objects[0]
    assert obj.metadata.namespace == "team-a"
    assert isinstance(obj, PodChaos)
    assert obj.spec.selector.namespaces == ["team-a"]


def test_explicit_selector_namespaces_are_kept() -> None:
    text = POD_KILL.replace("    labelSelectors:", "    namespaces: [a, b]\n    labelSelectors:")
    obj = load_text(text).objects[0]
    assert isinstance(obj, PodChaos)
    assert obj.spec.selector.namespaces == ["a", "b"]


def test_error_names_document_field_and_line() -> None:
    text = DEPLOYMENT + "---\n" + POD_KILL.replace("action: pod-kill", "action: pod-kil")
    assert problems_of(text) == [
        "m.yaml:12: doc 2 spec.action: \"pod-kil\" is not one of 'pod-kill', 'pod-failure' or 'container-kill'"
    ]


def test_unknown_field_gets_a_did_you_mean() -> None:
    text = POD_KILL.replace("    labelSelectors:", "    labelSelector:")
    (problem,) = problems_of(text)
    assert 'spec.selector.labelSelector: unknown field; did you mean "labelSelectors"?' in problem


def test_missing_required_field() -> None:
    (problem,) = problems_of(POD_KILL.replace("  mode: one\n", ""))
    assert problem.endswith("spec.mode: is required")


def test_wrong_type_is_named() -> None:
    (problem,) = problems_of(POD_KILL.replace("  mode: one\n", "  mode: one\n  gracePeriod: soon\n"))
    assert 'spec.gracePeriod: "soon" is not an integer' in problem


def test_negative_bound_is_named() -> None:
    (problem,) = problems_of(POD_KILL.replace("  mode: one\n", "  mode: one\n  gracePeriod: -1\n"))
    assert "spec.gracePeriod: -1 should be greater than or equal to 0" in problem


def test_malformed_yaml_reports_the_line() -> None:
    (problem,) = problems_of(POD_KILL + "  oops: [unclosed\n")
    assert problem.startswith("m.yaml:13: malformed YAML")


def test_unknown_kind_in_the_group_is_refused_with_a_hint() -> None:
    (problem,) = problems_of(POD_KILL.replace("kind: PodChaos", "kind: PodChoas"))
    assert 'kind: "PodChoas" is not a chaos-mesh.org kind; did you mean "PodChaos"?' in problem


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    (problem,) = problems_of("- just\n- a list\n")
    assert "doc 1 expected a Kubernetes object (a mapping), got a list" in problem


def test_missing_kind_and_name() -> None:
    assert problems_of("apiVersion: chaos-mesh.org/v1alpha1\n") == ["m.yaml:1: doc 1 kind: is required"]
    (problem,) = problems_of(POD_KILL.replace("  name: kill-one\n", ""))
    assert "metadata.name: is required" in problem


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = POD_KILL.replace("mode: one", "mode: fixed\n  value: '-3'") + "---\n" + POD_KILL.replace(
        "pod-kill", "container-kill"
    )
    problems = problems_of(text)
    assert len(problems) == 2
    assert "doc 1 spec.value" in problems[0]
    assert "doc 2 spec.containerNames" in problems[1]


def test_parse_object_from_a_client_dict() -> None:
    obj = parse_object(load_text(POD_KILL).objects[0].to_dict())
    assert obj.metadata.name == "kill-one"


def test_sdk_object_validates_and_dumps() -> None:
    chaos = PodChaos.model_validate(
        {"metadata": {"name": "sdk", "namespace": "ns"}, "spec": {"action": "pod-kill", "mode": "one", "selector": {}}}
    )
    assert chaos.kind == "PodChaos"
    assert admit_update(chaos, chaos) == []
    assert chaos.to_dict()["spec"]["selector"] == {"namespaces": ["ns"]}


def test_spec_update_of_an_experiment_is_refused() -> None:
    old = load_text(POD_KILL).objects[0]
    new = load_text(POD_KILL.replace("mode: one", "mode: all")).objects[0]
    (issue,) = admit_update(old, new)
    assert str(issue).startswith("spec: the spec of a PodChaos cannot be updated once created (changed: spec.mode)")


def test_metadata_update_of_an_experiment_is_allowed() -> None:
    old = load_text(POD_KILL).objects[0]
    text = POD_KILL.replace("  namespace: shop\n", "  namespace: shop\n  annotations:\n"
                            "    experiment.chaos-mesh.org/pause: 'true'\n")
    assert admit_update(old, load_text(text).objects[0]) == []


def test_python_field_names_are_not_wire_names() -> None:
    (problem,) = problems_of(POD_KILL.replace("  mode: one\n", "  mode: one\n  grace_period: 5\n"))
    assert 'spec.grace_period: unknown field; did you mean "gracePeriod"?' in problem
