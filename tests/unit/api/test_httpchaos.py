"""HTTPChaos and PodHttpChaos: schema, webhook rules, proxy-side checks and SDK use."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.httpchaos import HTTPChaos, HTTPChaosSpec, HTTPChaosStatus
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object
from faultmesh.api.podhttpchaos import (
    HTTP_METHODS,
    PodHttpChaos,
    PodHttpChaosActions,
    PodHttpChaosPatchActions,
    PodHttpChaosPatchBodyAction,
    PodHttpChaosReplaceActions,
    PodHttpChaosRule,
    PodHttpChaosSelector,
    PodHttpChaosSpec,
    PodHttpChaosTLS,
)

BASE_SPEC: dict[str, Any] = {
    "mode": "all",
    "selector": {"labelSelectors": {"app": "web"}},
    "target": "Request",
    "port": 80,
    "abort": True,
}
TLS: dict[str, Any] = {
    "secretName": "web-tls",
    "secretNamespace": "shop",
    "certName": "tls.crt",
    "keyName": "tls.key",
}


def _http(spec: dict[str, Any], **replace: Any) -> dict[str, Any]:
    # ``replace`` edits the base spec (None drops a key); ``spec`` then adds to it.
    base = {key: replace.get(key, value) for key, value in BASE_SPEC.items()}
    base = {key: value for key, value in base.items() if value is not None}
    merged = {**base, **spec}
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "HTTPChaos",
        "metadata": {"name": "web-http", "namespace": "shop"},
        "spec": merged,
    }


def _load(spec: dict[str, Any], **replace: Any) -> HTTPChaos:
    obj = parse_object(_http(spec, **replace))
    assert isinstance(obj, HTTPChaos)
    return obj


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def _http_problems(spec: dict[str, Any], **replace: Any) -> dict[str, str]:
    return _problems(_http(spec, **replace))


# --- schema ---------------------------------------------------------------------------------


def test_crd_uses_the_snake_case_header_selectors_and_byte_body() -> None:
    spec = crd_for(HTTPChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {"request_headers", "response_headers"} <= set(spec["properties"])
    assert "requestHeaders" not in spec["properties"]
    assert spec["properties"]["replace"]["properties"]["body"] == {
        "description": "New message body, base64-encoded.",
        "format": "byte",
        "type": "string",
    }
    assert spec["properties"]["target"]["enum"] == ["Request", "Response"]
    assert sorted(spec["required"]) == ["mode", "selector", "target"]


def test_crd_does_not_require_spec_but_loading_does() -> None:
    schema = crd_for(HTTPChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "required" not in schema
    data = _http({})
    del data["spec"]
    assert _problems(data) == {"spec": "is required"}


def test_pod_http_chaos_target_is_a_plain_string_in_its_crd() -> None:
    rule = crd_for(PodHttpChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["rules"]["items"]
    assert rule["properties"]["target"] == {"description": "Request or Response.", "type": "string"}
    assert sorted(rule["required"]) == ["actions", "port", "selector", "target"]


# --- defaults -------------------------------------------------------------------------------


def test_defaults_fill_the_namespace_and_leave_the_rest_unset() -> None:
    chaos = _load({})
    assert chaos.spec.selector.namespaces == ["shop"]
    assert chaos.spec.delay is None and chaos.spec.replace is None and chaos.spec.tls is None
    assert chaos.to_dict()["spec"] == {
        "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "web"}},
        "mode": "all",
        "abort": True,
        "target": "Request",
        "port": 80,
    }


def test_the_chaos_mesh_nginx_example_loads() -> None:
    text = """
kind: HTTPChaos
apiVersion: chaos-mesh.org/v1alpha1
metadata: {name: nginx-http-patch}
spec:
  selector: {namespaces: [default], labelSelectors: {app: nginx}}
  mode: all
  target: Response
  patch:
    body: {type: JSON, value: '{"status":"Failed"}'}
  port: 80
  path: '*'
"""
    chaos = load_text(text).objects[0]
    assert isinstance(chaos, HTTPChaos)
    assert chaos.spec.patch is not None and chaos.spec.patch.body is not None
    assert chaos.spec.patch.body.type == "JSON"


# --- webhook rules --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["Request", "Response"])
def test_both_targets_are_accepted(target: str) -> None:
    assert _load({"target": target}).spec.target == target


@pytest.mark.parametrize("target", ["request", "Both", ""])
def test_other_targets_are_refused(target: str) -> None:
    problems = _http_problems({"target": target})
    assert "is not one of 'Request' or 'Response'" in problems["spec.target"]


def test_target_is_required() -> None:
    assert _http_problems({}, target=None) == {"spec.target": "is required"}


@pytest.mark.parametrize("port", [1, 80, 65535])
def test_ports_in_range_are_accepted(port: int) -> None:
    assert _load({"port": port}).spec.port == port


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_ports_out_of_range_are_refused(port: int) -> None:
    assert _http_problems({"port": port}) == {"spec.port": f"{port} is not a TCP port; use 1-65535"}


def test_a_missing_port_is_refused_as_the_webhook_does() -> None:
    assert "is required" in _http_problems({}, port=None)["spec.port"]


@pytest.mark.parametrize("method", HTTP_METHODS)
def test_every_standard_method_is_accepted_on_requests(method: str) -> None:
    assert _load({"method": method}).spec.method == method


def test_a_lower_case_method_is_refused_on_requests() -> None:
    problems = _http_problems({"method": "gET"})
    assert problems["spec.method"].startswith('"gET" is not a request method; use one of GET, POST')


def test_response_selectors_may_name_an_extension_method_but_not_garbage() -> None:
    # As the webhook: the method list is checked for requests only.
    assert _load({"target": "Response", "method": "gET"}).spec.method == "gET"
    problems = _http_problems({"target": "Response", "method": "GET /"})
    assert "is not an HTTP method" in problems["spec.method"]


@pytest.mark.parametrize("delay", ["1s", "300ms", "2h45m", "0"])
def test_good_delays_are_accepted(delay: str) -> None:
    assert _load({"delay": delay}, abort=None).spec.delay == delay


@pytest.mark.parametrize("delay", ["1", "1SSS", "", "-1s"])
def test_bad_delays_are_refused(delay: str) -> None:
    assert "spec.delay" in _http_problems({"delay": delay})


def test_bad_duration_is_refused() -> None:
    assert _http_problems({"duration": "400S"}) == {
        "spec.duration": '"400S" is not a duration (e.g. 100ms, 1.5s, 2h45m)'
    }


@pytest.mark.parametrize(
    ("mode", "value", "message"),
    [
        ("fixed", "0", '"0" must be greater than 0 with mode fixed'),
        ("fixed", "num", '"num" is not an integer'),
        ("fixed-percent", "101", '"101" must be in (0,100] with mode fixed-percent'),
        ("random-max-percent", "0", '"0" must be in (0,100] with mode random-max-percent'),
    ],
)
def test_mode_value_rules_apply(mode: str, value: str, message: str) -> None:
    assert message in _http_problems({"mode": mode, "value": value})["spec.value"]


# --- actions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actions",
    [
        {"abort": True},
        {"delay": "10ms"},
        {"replace": {"path": "/v2"}},
        {"patch": {"headers": [["X-Chaos", "1"]]}},
    ],
)
def test_any_one_action_is_enough(actions: dict[str, Any]) -> None:
    assert _load(actions, abort=None).spec.has_action()


@pytest.mark.parametrize("actions", [{}, {"abort": False}, {"replace": {}}, {"patch": {"queries": []}}])
def test_no_action_is_refused(actions: dict[str, Any]) -> None:
    problems = _http_problems(actions, abort=None)
    assert problems == {"spec": "no action is set: set abort: true, delay, replace or patch"}


def test_replace_body_is_base64() -> None:
    body = base64.b64encode(b'{"hacked": true}').decode()
    chaos = _load({"target": "Response", "replace": {"body": body, "code": 503}}, abort=None)
    assert chaos.spec.replace is not None and chaos.spec.replace.body == body
    problems = _http_problems({"target": "Response", "replace": {"body": "not base64!"}})
    assert problems["spec.replace.body"].startswith('"not base64!" is not base64')


@pytest.mark.parametrize("code", [99, 1000, 0])
def test_status_codes_outside_100_999_are_refused(code: int) -> None:
    problems = _http_problems({"target": "Response", "code": code, "replace": {"code": code}})
    assert problems["spec.code"] == f"{code} is not an HTTP status code; use 100-999 (e.g. 404, 503)"
    assert problems["spec.replace.code"] == problems["spec.code"]


@pytest.mark.parametrize(
    ("field", "spec"),
    [
        ("spec.replace.code", {"replace": {"code": 500}}),
        ("spec.code", {"code": 200}),
        ("spec.response_headers", {"response_headers": {"Server": "nginx"}}),
    ],
)
def test_response_only_fields_are_refused_on_requests(field: str, spec: dict[str, Any]) -> None:
    problems = _http_problems(spec)
    assert problems[field] == "applies to responses only; it has no effect with target Request"
    assert _load({**spec, "target": "Response"}).spec.target == "Response"


@pytest.mark.parametrize(
    ("field", "spec"),
    [
        ("spec.replace.path", {"replace": {"path": "/v2"}}),
        ("spec.replace.method", {"replace": {"method": "POST"}}),
        ("spec.replace.queries", {"replace": {"queries": {"page": "2"}}}),
        ("spec.patch.queries", {"patch": {"queries": [["debug", "1"]]}}),
    ],
)
def test_request_only_fields_are_refused_on_responses(field: str, spec: dict[str, Any]) -> None:
    problems = _http_problems({**spec, "target": "Response"})
    assert problems[field] == "applies to requests only; it has no effect with target Response"
    assert _load(spec).spec.target == "Request"


def test_patch_body_must_be_a_json_merge_patch() -> None:
    ok = _load({"patch": {"body": {"type": "JSON", "value": '{"a": null}'}}}, abort=None)
    assert ok.spec.patch is not None
    problems = _http_problems({"patch": {"body": {"type": "XML", "value": "<a/>"}}})
    assert problems == {"spec.patch.body.type": '"XML" is not a patch type; use JSON (a JSON merge patch)'}
    problems = _http_problems({"patch": {"body": {"type": "JSON", "value": "{oops"}}})
    assert problems["spec.patch.body.value"].startswith("is not JSON")


def test_patch_body_needs_type_and_value() -> None:
    problems = _http_problems({"patch": {"body": {"type": "JSON"}}})
    assert problems == {"spec.patch.body.value": "is required"}


@pytest.mark.parametrize("field", ["queries", "headers"])
def test_patch_pairs_have_two_items(field: str) -> None:
    problems = _http_problems({"patch": {field: [["a", "b"], ["c"], ["d", "e", "f"]]}})
    assert problems[f"spec.patch.{field}[1]"].startswith("has 1 item;")
    assert problems[f"spec.patch.{field}[2]"].startswith("has 3 items;")
    assert f"spec.patch.{field}[0]" not in problems


def test_header_names_and_values_are_checked_everywhere() -> None:
    problems = _http_problems(
        {
            "target": "Response",
            "request_headers": {"X Bad": "v"},
            "response_headers": {"X-Ok": "line\nbreak"},
            "replace": {"headers": {"Host:": "x"}},
            "patch": {"headers": [["X-Ok", "caf\u00e9"]]},
        }
    )
    assert problems["spec.request_headers.X Bad"].startswith('"X Bad" is not a valid header name')
    assert problems["spec.response_headers.X-Ok"].startswith('"line\\nbreak" is not a valid header value')
    assert problems["spec.replace.headers.Host:"].startswith('"Host:" is not a valid header name')
    assert "is not a valid header value" in problems["spec.patch.headers[0][1]"]


@pytest.mark.parametrize("path", ["/", "/api/*", "*", "*.json", "?pi"])
def test_path_patterns_that_can_match_are_accepted(path: str) -> None:
    assert _load({"path": path}).spec.path == path


@pytest.mark.parametrize("path", ["api", "", "v1/*"])
def test_path_patterns_that_never_match_are_refused(path: str) -> None:
    assert "spec.path" in _http_problems({"path": path})


def test_replace_path_must_be_a_uri_path() -> None:
    assert _http_problems({"replace": {"path": "v2"}}) == {
        "spec.replace.path": '"v2" is not a URI path; it must start with "/"'
    }
    assert "no spaces" in _http_problems({"replace": {"path": "/a b"}})["spec.replace.path"]


# --- TLS ------------------------------------------------------------------------------------


def test_tls_reference_is_accepted() -> None:
    chaos = _load({"tls": {**TLS, "caName": "ca.crt"}})
    assert chaos.spec.tls is not None and chaos.spec.tls.ca_name == "ca.crt"
    assert chaos.to_dict()["spec"]["tls"]["caName"] == "ca.crt"


@pytest.mark.parametrize("missing", ["secretName", "secretNamespace", "certName", "keyName"])
def test_tls_fields_are_required(missing: str) -> None:
    tls = {key: value for key, value in TLS.items() if key != missing}
    assert _http_problems({"tls": tls}) == {f"spec.tls.{missing}": "is required"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("secretName", "Web_TLS", "is not a Secret name"),
        ("secretName", "", "is not a Secret name"),
        ("secretNamespace", "shop.eu", "is not a namespace name"),
        ("certName", "certs/tls.crt", "is not a Secret data key"),
        ("keyName", "..", "is not a Secret data key"),
        ("caName", "", "is not a Secret data key"),
    ],
)
def test_tls_fields_are_kubernetes_names(field: str, value: str, message: str) -> None:
    assert message in _http_problems({"tls": {**TLS, field: value}})[f"spec.tls.{field}"]


# --- status ---------------------------------------------------------------------------------


def test_status_keeps_instances_as_int64() -> None:
    status = crd_for(HTTPChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["instances"]["additionalProperties"] == {"type": "integer", "format": "int64"}
    chaos = HTTPChaos.model_validate(
        {**_http({}), "status": {"experiment": {"desiredPhase": "Run"}, "instances": {"shop/web-0": 3}}}
    )
    assert isinstance(chaos.status, HTTPChaosStatus)
    assert chaos.status.instances == {"shop/web-0": 3}


# --- SDK ------------------------------------------------------------------------------------


def test_sdk_round_trip() -> None:
    chaos = HTTPChaos(
        metadata=ObjectMeta(name="slow-api", namespace="shop"),
        spec=HTTPChaosSpec(
            mode="one",
            selector=PodSelectorSpec(label_selectors={"app": "api"}),
            target="Request",
            port=8080,
            path="/api/*",
            method="GET",
            request_headers={"X-User": "test"},
            delay="250ms",
            patch=PodHttpChaosPatchActions(headers=[["X-Chaos", "delay"]]),
            tls=PodHttpChaosTLS(
                secret_name="api-tls", secret_namespace="shop", cert_name="tls.crt", key_name="tls.key"
            ),
            duration="5m",
        ),
    )
    assert validate_object(chaos) == []
    data = chaos.to_dict()
    assert data["kind"] == "HTTPChaos"
    assert data["spec"]["request_headers"] == {"X-User": "test"}
    assert data["spec"]["selector"]["namespaces"] == ["shop"]
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert isinstance(again, HTTPChaos)
    assert again.to_dict() == data


def test_sdk_reports_rule_problems_with_paths() -> None:
    chaos = HTTPChaos(
        metadata=ObjectMeta(name="nothing", namespace="shop"),
        spec=HTTPChaosSpec(mode="all", selector=PodSelectorSpec(), target="Request", port=0),
    )
    issues = {issue.where(): issue.message for issue in validate_object(chaos)}
    assert issues["spec.port"] == "0 is not a TCP port; use 1-65535"
    assert issues["spec"].startswith("no action is set")


# --- PodHttpChaos ---------------------------------------------------------------------------


def _pod_http(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodHttpChaos",
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {"rules": rules, "tls": TLS},
    }


def test_pod_http_chaos_round_trip_in_python() -> None:
    pod = PodHttpChaos(
        metadata=ObjectMeta(name="web-0", namespace="shop"),
        spec=PodHttpChaosSpec(
            http_rules=[
                PodHttpChaosRule(
                    target="Response",
                    port=80,
                    source="shop/web-http",
                    selector=PodHttpChaosSelector(path="/api/*", code=200, response_headers={"Server": "nginx"}),
                    actions=PodHttpChaosActions(
                        replace=PodHttpChaosReplaceActions(code=503),
                        patch=PodHttpChaosPatchActions(
                            body=PodHttpChaosPatchBodyAction(type="JSON", value='{"ok": false}')
                        ),
                    ),
                )
            ]
        ),
    )
    assert validate_object(pod) == []
    data = pod.to_dict()
    assert data["spec"]["rules"][0]["selector"]["response_headers"] == {"Server": "nginx"}
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert isinstance(again, PodHttpChaos)
    assert again.to_dict() == data


def test_pod_http_chaos_spec_may_be_absent() -> None:
    data = _pod_http([])
    del data["spec"]
    pod = parse_object(data)
    assert isinstance(pod, PodHttpChaos)
    assert pod.spec.http_rules is None


def test_pod_http_chaos_rules_are_checked() -> None:
    problems = _problems(
        _pod_http(
            [
                {"target": "Req", "port": 0, "selector": {"code": 42}, "actions": {}},
                {"target": "Request", "port": 80, "selector": {"port": 70000}, "actions": {"replace": {"code": 500}}},
            ]
        )
    )
    assert problems == {
        "spec.rules[0].target": '"Req" is not a target; use Request or Response',
        "spec.rules[0].port": "0 is not a TCP port; use 1-65535",
        "spec.rules[0].actions": "no action is set: set abort: true, delay, replace or patch",
        "spec.rules[0].selector.code": "42 is not an HTTP status code; use 100-999 (e.g. 404, 503)",
        "spec.rules[1].selector.port": "70000 is not a TCP port; use 1-65535",
        "spec.rules[1].actions.replace.code": "applies to responses only; it has no effect with target Request",
    }


def test_pod_http_chaos_status_fields() -> None:
    pod = PodHttpChaos.model_validate(
        {**_pod_http([]), "status": {"pid": 4242, "startTime": 1700000000, "observedGeneration": 2}}
    )
    assert pod.status is not None and pod.status.pid == 4242 and pod.status.observed_generation == 2
    assert pod.to_dict()["status"] == {"pid": 4242, "startTime": 1700000000, "observedGeneration": 2}
