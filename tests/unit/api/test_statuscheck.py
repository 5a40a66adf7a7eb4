"""StatusCheck: defaults as Chaos Mesh's webhook sets them, the HTTP check rules, SDK use."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.crd import crd_for
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object
from faultmesh.api.statuscheck import (
    HTTPCriteria,
    HTTPStatusCheck,
    StatusCheck,
    StatusCheckSpec,
    request_uri_problem,
    status_code_problem,
)

HTTP: dict[str, Any] = {"url": "http://10.0.0.1:8080/health", "criteria": {"statusCode": "200"}}


def _check(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "StatusCheck",
        "metadata": {"name": "probe", "namespace": "shop"},
        "spec": spec,
    }


def _problems(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(_check(spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def test_defaults_match_chaos_mesh() -> None:
    check = parse_object(_check({"http": HTTP}))
    assert isinstance(check, StatusCheck)
    spec = check.spec
    assert spec.mode == "Synchronous"  # set by the webhook, not the CRD
    assert spec.type == "HTTP"
    assert (spec.timeout_seconds, spec.interval_seconds) == (1, 10)
    assert (spec.failure_threshold, spec.success_threshold) == (3, 1)
    assert spec.records_history_limit == 100
    assert spec.http is not None and spec.http.method == "GET"


def test_mode_is_kept_when_given() -> None:
    check = parse_object(_check({"mode": "Continuous", "http": HTTP}))
    assert isinstance(check, StatusCheck)
    assert check.spec.mode == "Continuous"


def test_crd_requires_type_although_it_has_a_default() -> None:
    schema = crd_for(StatusCheck)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["type"]
    assert spec["properties"]["type"]["default"] == "HTTP"
    assert "default" not in spec["properties"]["mode"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeoutSeconds", 0, "greater than or equal to 1"),
        ("intervalSeconds", 0, "greater than or equal to 1"),
        ("failureThreshold", 0, "greater than or equal to 1"),
        ("successThreshold", -1, "greater than or equal to 1"),
        ("recordsHistoryLimit", 0, "greater than or equal to 1"),
        ("recordsHistoryLimit", 1001, "less than or equal to 1000"),
        ("mode", "Sometimes", "is not one of 'Synchronous' or 'Continuous'"),
        ("type", "TCP", "is not one of 'HTTP'"),
        ("duration", "1 minute", "is not a duration"),
    ],
)
def test_bounds_and_enums(field: str, value: Any, message: str) -> None:
    problems = _problems({field: value, "http": HTTP})
    assert message in problems[f"spec.{field}"]


@pytest.mark.parametrize(
    "field", ["timeoutSeconds", "intervalSeconds", "failureThreshold", "successThreshold"]
)
def test_bounds_accept_one(field: str) -> None:
    check = parse_object(_check({field: 1, "http": HTTP}))
    assert check.to_dict()["spec"][field] == 1


def test_http_is_required_with_type_http() -> None:
    assert _problems({"type": "HTTP"}) == {"spec.http": "is required with type HTTP (url, method, criteria)"}


def test_http_fields_are_required() -> None:
    problems = _problems({"http": {"method": "POST"}})
    assert problems == {"spec.http.url": "is required", "spec.http.criteria": "is required"}


def test_empty_url_is_refused() -> None:
    problems = _problems({"http": {**HTTP, "url": ""}})
    assert problems["spec.http.url"].startswith("is required")


@pytest.mark.parametrize(
    "url",
    [
        "http://123.123.123.123",
        "https://shop.svc:8443/health?deep=1",
        "/healthz",
        "http://[::1]:80/",
        "mailto:x@y",
    ],
)
def test_request_uris_go_accepts(url: str) -> None:
    assert request_uri_problem(url) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("health", "is not an absolute URL"),
        ("10.0.0.1:8080", "is not an absolute URL"),
        ("http://host:port/", 'has port "port"'),
        ("http://shop/a b", "contains a space"),
    ],
)
def test_request_uris_go_refuses(url: str, message: str) -> None:
    problem = request_uri_problem(url)
    assert problem is not None and message in problem
    assert message in _problems({"http": {**HTTP, "url": url}})["spec.http.url"]


@pytest.mark.parametrize("code", ["200", "1", "999", "200-299", "200-200", "+200"])
def test_status_codes(code: str) -> None:
    assert status_code_problem(code) is None


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "is required"),
        ("0", "is not an HTTP status code"),
        ("1000", "is not an HTTP status code"),
        ("2xx", "neither a status code (200) nor a range"),
        ("200-", '"" is not a number'),
        ("-200", "is not an HTTP status code"),
        ("200-abc", '"abc" is not a number'),
        ("200-1000", "1000 is not an HTTP status code"),
        ("500-200", "the range starts at 500, after its end 200"),
    ],
)
def test_bad_status_codes(code: str, message: str) -> None:
    problem = status_code_problem(code)
    assert problem is not None and message in problem
    problems = _problems({"http": {**HTTP, "criteria": {"statusCode": code}}})
    assert message in problems["spec.http.criteria.statusCode"]


def test_headers_are_lists_of_values() -> None:
    spec = {
        "http": {**HTTP, "method": "POST", "headers": {"Content-Type": ["application/json"]}, "body": "{}"}
    }
    check = parse_object(_check(spec))
    assert check.to_dict()["spec"]["http"]["headers"] == {"Content-Type": ["application/json"]}
    assert "is not a list" in _problems({"http": {**HTTP, "headers": {"X-A": "b"}}})["spec.http.headers.X-A"]


def test_sdk_round_trip() -> None:
    check = StatusCheck(
        metadata=ObjectMeta(name="probe", namespace="shop"),
        spec=StatusCheckSpec(
            mode="Continuous",
            duration="5m",
            http=HTTPStatusCheck(url="http://shop/health", criteria=HTTPCriteria(status_code="200-299")),
        ),
    )
    assert validate_object(check) == []
    data = check.to_dict()
    assert data["kind"] == "StatusCheck"
    assert data["spec"]["http"]["criteria"] == {"statusCode": "200-299"}
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert again.to_dict() == data


def test_spec_is_immutable_like_chaos_mesh() -> None:
    assert StatusCheck.immutable_spec is True


def test_status_round_trips() -> None:
    status = {
        "startTime": "2024-05-01T10:00:00Z",
        "count": 3,
        "conditions": [
            {
                "type": "Completed",
                "status": "True",
                "reason": "StatusCheckDurationExceed",
                "lastProbeTime": "2024-05-01T10:05:00Z",
                "lastTransitionTime": "2024-05-01T10:05:00Z",
            }
        ],
        "records": [{"startTime": "2024-05-01T10:00:00Z", "outcome": "Success"}],
    }
    check = parse_object({**_check({"http": HTTP}), "status": status})
    assert check.to_dict()["status"] == status
