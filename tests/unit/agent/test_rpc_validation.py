"""Apply requests are checked before anything runs; every refusal names the request field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faultmesh.agent.rpc.validation import (
    MAX_LEASE_SECONDS,
    InvalidRequestError,
    check_apply,
    check_spec,
    check_ttl,
    parse_json_object,
)

SELECTED = {"selector": {"namespaces": ["default"]}, "mode": "all"}


def apply_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "injection_id": "default/net/uid-1/default/web",
        "owner": "controller-0",
        "kind": "NetworkChaos",
        "spec_json": json.dumps({**SELECTED, "action": "partition", "direction": "to"}),
        "container_id": "containerd://abc",
        "record_id": "default/web",
        "facts_json": "",
        "lease_ttl_seconds": 30.0,
        "slot": "",
    }
    args.update(overrides)
    return args


def problems_of(**overrides: Any) -> list[str]:
    with pytest.raises(InvalidRequestError) as caught:
        check_apply(**apply_args(**overrides))
    return caught.value.problems


def test_a_good_request_comes_back_defaulted_in_wire_form() -> None:
    checked = check_apply(**apply_args(facts_json='{"podIPs": ["10.0.0.2"]}'))
    assert checked.spec["action"] == "partition"
    assert checked.spec["direction"] == "to"
    assert checked.facts == {"podIPs": ["10.0.0.2"]}


def test_spec_grammar_errors_name_the_spec_field() -> None:
    spec = {**SELECTED, "action": "delay", "delay": {"latency": "10x"}}
    problems = problems_of(spec_json=json.dumps(spec))
    assert len(problems) == 1
    assert problems[0].startswith('spec_json.delay.latency: "10x" is not a duration')


def test_spec_webhook_rules_run_too() -> None:
    spec = {"selector": {}, "mode": "fixed", "value": "0", "action": "partition"}
    assert any(problem.startswith("spec_json.value:") for problem in problems_of(spec_json=json.dumps(spec)))


def test_unknown_spec_fields_are_refused_with_a_hint() -> None:
    spec = {**SELECTED, "action": "partition", "directon": "to"}
    assert problems_of(spec_json=json.dumps(spec)) == ['spec_json.directon: unknown field; did you mean "direction"?']


@pytest.mark.parametrize(
    ("spec_json", "expected"),
    [
        ("", "spec_json: is required (a JSON object)"),
        ("[1]", "spec_json: must be a JSON object, not list"),
        ("{oops", "spec_json: is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ],
)
def test_spec_json_must_be_a_json_object(spec_json: str, expected: str) -> None:
    assert problems_of(spec_json=spec_json) == [expected]


def test_unknown_kind_suggests_the_near_miss() -> None:
    expected = 'kind: "NetworkChoas" is not a kind this agent knows; did you mean "NetworkChaos"?'
    assert problems_of(kind="NetworkChoas") == [expected]
    assert problems_of(kind="") == ["kind: is required"]
    assert problems_of(kind="NetworkPartiton", planner_kinds=["NetworkPartition"]) == [
        'kind: "NetworkPartiton" is not a kind this agent knows; did you mean "NetworkPartition"?'
    ]


def test_agent_only_kinds_pass_their_spec_to_their_planner_unchanged() -> None:
    spec = {"injectionId": "x", "direction": "to"}
    checked = check_apply(**apply_args(kind="NetworkPartition", spec_json=json.dumps(spec),
                                       planner_kinds=["NetworkPartition"]))
    assert checked.spec == spec


def test_kinds_without_a_spec_to_inject_are_not_chaos_kinds() -> None:
    with pytest.raises(InvalidRequestError, match='kind: "Schedule" is not a chaos kind'):
        check_spec("Schedule", {})


def test_field_problems_come_together() -> None:
    problems = problems_of(injection_id="", owner="has space", container_id="abc", lease_ttl_seconds=0.0,
                           facts_json="[]")
    assert problems == [
        "injection_id: is required",
        'owner: "has space" holds whitespace or control characters',
        "target.container_id: 'abc' is not a container id: expected containerd://ID, docker://ID, cri-o://ID"
        " or process://PID",
        "lease_ttl_seconds: 0.0 must be greater than 0 seconds",
        "target.facts_json: must be a JSON object, not list",
    ]


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), MAX_LEASE_SECONDS + 1])
def test_lease_lengths_outside_bounds_are_refused(seconds: float) -> None:
    with pytest.raises(InvalidRequestError, match=r"^ttl: "):
        check_ttl("ttl", seconds)


def test_empty_facts_are_an_empty_object() -> None:
    assert parse_json_object("target.facts_json", "  ", required=False) == {}
