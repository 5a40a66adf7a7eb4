"""Admission decisions as functions of the review: defaults as a JSON patch, rules, immutability, reach."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.base import format_path
from faultmesh.api.loader import parse_object
from faultmesh.api.registry import kinds
from faultmesh.controller.webhooks import (
    AUTH_PATH,
    MUTATE_PREFIX,
    VALIDATE_PREFIX,
    WEBHOOK_KINDS,
    AdmissionRequest,
    AdmissionReview,
    ServiceRef,
    Verdict,
    WebhookSettings,
    authorize,
    create_app,
    json_patch,
    json_pointer,
    mutate,
    namespace_reach,
    review_response,
    validate,
    webhook_configurations,
)

NETWORK_CHAOS = kinds()["NetworkChaos"]


# --- a reference JSON patch applier (RFC 6902 add/remove/replace), to check patches by their effect


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    document = copy.deepcopy(document)
    for op in patch:
        tokens = [_unescape(t) for t in op["path"].split("/")[1:]]
        if not tokens:
            assert op["op"] == "replace"
            document = copy.deepcopy(op["value"])
            continue
        parent = document
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last: Any = int(tokens[-1]) if isinstance(parent, list) else tokens[-1]
        if op["op"] == "remove":
            del parent[last]
        elif op["op"] == "add":
            assert isinstance(parent, dict), "the patches only add mapping keys"
            assert last not in parent, f"add over an existing key {op['path']}"
            parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "replace":
            assert (last in parent) if isinstance(parent, dict) else (0 <= last < len(parent))
            parent[last] = copy.deepcopy(op["value"])
        else:
            raise AssertionError(f"unexpected op {op['op']}")
    return document


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "a/b", "~c", "0"]), children, max_size=3),
    max_leaves=12,
)


@given(json_values, json_values)
def test_patch_turns_the_original_into_the_target(original: Any, target: Any) -> None:
    patched = apply_patch(original, json_patch(original, target))
    assert json.dumps(patched, sort_keys=True) == json.dumps(target, sort_keys=True)


@given(json_values)
def test_patch_between_equal_documents_is_empty(document: Any) -> None:
    assert json_patch(document, copy.deepcopy(document)) == []


def test_patch_touches_only_what_changed() -> None:
    original = {"a": 1, "nested": {"keep": [1, 2], "list": [{"x": 1}, {"x": 2}]}}
    target = {"a": 1, "nested": {"keep": [1, 2], "list": [{"x": 1}, {"x": 2, "y": 3}]}, "new": True}
    assert json_patch(original, target) == [
        {"op": "add", "path": "/nested/list/1/y", "value": 3},
        {"op": "add", "path": "/new", "value": True},
    ]


def test_patch_keeps_booleans_apart_from_numbers() -> None:
    assert json_patch({"x": 1}, {"x": True}) == [{"op": "replace", "path": "/x", "value": True}]
    assert json_patch({"x": [1]}, {"x": [1, 2]}) == [{"op": "replace", "path": "/x", "value": [1, 2]}]


def test_pointer_escapes_slash_and_tilde() -> None:
    assert json_pointer(("metadata", "labels", "app.kubernetes.io/name")) == "/metadata/labels/app.kubernetes.io~1name"
    assert json_pointer(("a~b", 0)) == "/a~0b/0"


# --- reviews


def network_chaos(namespace: str = "web", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "delay", "mode": "one", "selector": {"labelSelectors": {"app": "web"}}, "delay": {"latency": "10ms"},
    }
    body.update(spec)
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": "delay", "namespace": namespace}, "spec": body,
    }


def review(obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None,
           user: str = "alice") -> AdmissionRequest:
    return AdmissionRequest.model_validate({
        "uid": "7d1c", "kind": {"group": "chaos-mesh.org", "version": "v1alpha1", "kind": obj["kind"]},
        "namespace": obj["metadata"].get("namespace"), "name": obj["metadata"]["name"], "operation": operation,
        "userInfo": {"username": user, "groups": ["dev"]}, "object": obj, "oldObject": old,
    })


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server holds after the mutating webhook: the object with its patch applied."""
    verdict = mutate(review(obj), kinds()[obj["kind"]])
    patched: dict[str, Any] = apply_patch(obj, verdict.patch or [])
    return patched


def test_mutate_fills_the_same_defaults_as_faultmesh_validate() -> None:
    obj = network_chaos()
    verdict = mutate(review(obj), NETWORK_CHAOS)
    assert verdict.allowed
    ops = {op["path"]: op for op in verdict.patch or []}
    assert ops["/spec/selector/namespaces"] == {"op": "add", "path": "/spec/selector/namespaces", "value": ["web"]}
    assert ops["/spec/direction"]["value"] == "to"
    assert all(op["op"] == "add" and op["path"].startswith("/spec/") for op in ops.values())
    expected = parse_object(obj).to_dict()["spec"]
    assert apply_patch(obj, verdict.patch or [])["spec"] == expected


def test_mutate_is_idempotent() -> None:
    once = stored(network_chaos())
    assert mutate(review(once), NETWORK_CHAOS).patch is None


def test_mutate_fills_defaults_of_every_embedded_selector() -> None:
    schedule = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
        "metadata": {"name": "nightly", "namespace": "ops"},
        "spec": {"schedule": "@every 1h", "type": "NetworkChaos", "historyLimit": 1, "concurrencyPolicy": "Forbid",
                 "networkChaos": network_chaos()["spec"]},
    }
    patched = stored(schedule)
    assert patched["spec"]["networkChaos"]["selector"]["namespaces"] == ["ops"]
    assert patched["spec"]["networkChaos"]["direction"] == "to"


def test_mutate_lets_an_unparsable_object_through_for_the_validator_to_explain() -> None:
    verdict = mutate(review(network_chaos(delay={"latency": "10x"})), NETWORK_CHAOS)
    assert verdict == Verdict.allow()


def test_validate_names_the_field_path() -> None:
    verdict = validate(review(network_chaos(delay={"latency": "10x"})), NETWORK_CHAOS)
    assert not verdict.allowed
    assert verdict.code == 422
    assert verdict.message.startswith('spec.delay.latency: "10x" is not a duration')
    rules = validate(review(network_chaos(mode="fixed", value="0")), NETWORK_CHAOS)
    assert rules.message == 'spec.value: "0" must be greater than 0 with mode fixed'


def test_validate_refuses_a_spec_update() -> None:
    old = stored(network_chaos())
    new = copy.deepcopy(old)
    new["spec"]["delay"]["latency"] = "20ms"
    verdict = validate(review(new, "UPDATE", old), NETWORK_CHAOS)
    assert not verdict.allowed
    assert "the spec of a NetworkChaos cannot be updated once created (changed: spec.delay.latency)" in verdict.message


def test_validate_lets_metadata_and_status_updates_through() -> None:
    old = stored(network_chaos())
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"experiment.chaos-mesh.org/pause": "true"}
    new["metadata"]["finalizers"] = ["chaos-mesh/records"]
    new["status"] = {"experiment": {"desiredPhase": "Stop"}}
    assert validate(review(new, "UPDATE", old), NETWORK_CHAOS) == Verdict.allow()


def test_validate_compares_defaulted_specs() -> None:
    # Stored before the mutating webhook was installed: no defaults in it, yet the same spec.
    old = network_chaos()
    new = stored(network_chaos())
    new["metadata"]["annotations"] = {"note": "x"}
    assert validate(review(new, "UPDATE", old), NETWORK_CHAOS).allowed


def test_validate_lets_an_unchanged_but_now_invalid_spec_lose_its_finalizer() -> None:
    old = network_chaos(mode="fixed", value="0")
    old["metadata"]["finalizers"] = ["chaos-mesh/records"]
    new = copy.deepcopy(old)
    del new["metadata"]["finalizers"]
    verdict = validate(review(new, "UPDATE", old), NETWORK_CHAOS)
    assert verdict.allowed
    assert verdict.warnings == (
        'the stored spec breaks a rule: spec.value: "0" must be greater than 0 with mode fixed',
    )


def test_a_schedule_spec_may_change() -> None:
    spec = {"schedule": "@every 1h", "type": "NetworkChaos", "historyLimit": 1, "concurrencyPolicy": "Forbid",
            "networkChaos": network_chaos()["spec"]}
    old = stored({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
                  "metadata": {"name": "s", "namespace": "ops"}, "spec": spec})
    new = copy.deepcopy(old)
    new["spec"]["schedule"] = "@every 2h"
    assert validate(review(new, "UPDATE", old), kinds()["Schedule"]).allowed


def test_a_kind_sent_to_another_kinds_path_is_refused() -> None:
    verdict = validate(review(network_chaos()), kinds()["PodChaos"])
    assert not verdict.allowed
    assert verdict.message.startswith("this webhook serves PodChaos objects, not NetworkChaos")


def test_delete_and_connect_pass() -> None:
    request = review(network_chaos(), "DELETE")
    assert validate(request, NETWORK_CHAOS).allowed
    assert mutate(request, NETWORK_CHAOS).allowed


# --- which namespaces an object reaches


def reach_of(obj: dict[str, Any]) -> dict[str, str]:
    reach = namespace_reach(parse_object(obj))
    assert not reach.cluster_wide
    return {name: format_path(path) for name, path in reach.namespaces.items()}


def test_reach_defaults_to_the_objects_namespace() -> None:
    assert reach_of(network_chaos("web")) == {"web": "spec.selector"}


def test_reach_covers_the_target_and_named_pods() -> None:
    obj = network_chaos(
        "web", action="partition", delay=None, direction="both",
        selector={"namespaces": ["front"], "pods": {"db": ["db-0"]}},
        target={"mode": "all", "selector": {"namespaces": ["back", "front"]}},
    )
    del obj["spec"]["delay"]
    assert reach_of(obj) == {"back": "spec.target.selector", "db": "spec.selector", "front": "spec.selector"}


def test_reach_covers_workflow_templates() -> None:
    workflow = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ops"},
        "spec": {"entry": "main", "templates": [
            {"name": "main", "templateType": "Serial", "children": ["delay", "kill"]},
            {"name": "delay", "templateType": "NetworkChaos", "deadline": "1m",
             "networkChaos": network_chaos()["spec"] | {"selector": {"namespaces": ["a"]}}},
            {"name": "kill", "templateType": "PodChaos",
             "podChaos": {"action": "pod-kill", "mode": "one", "selector": {}}},
        ]},
    }
    assert reach_of(workflow) == {
        "a": "spec.templates[1].networkChaos.selector", "ops": "spec.templates[2].podChaos.selector",
    }


def test_a_selector_without_namespaces_reaches_the_whole_cluster() -> None:
    # Only without defaulting (a cluster-scoped object has no namespace to default to).
    model = NETWORK_CHAOS.model_validate(network_chaos())
    reach = namespace_reach(model)
    assert reach.namespaces == {}
    assert reach.cluster_wide == (("spec", "selector"),)


def test_kinds_without_pod_selectors_reach_nothing() -> None:
    azure = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "AzureChaos", "metadata": {"name": "a", "namespace": "ops"},
        "spec": {"action": "vm-stop", "subscriptionID": "s", "resourceGroupName": "g", "vmName": "v"},
    }
    assert namespace_reach(parse_object(azure)).empty


# --- the auth webhook's decisions that need no API server


def test_auth_skips_kinds_chaos_mesh_exempts() -> None:
    aws = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "AWSChaos", "metadata": {"name": "a", "namespace": "x"},
           "spec": {"action": "ec2-stop", "awsRegion": "eu-west-1", "ec2Instance": "i-1"}}
    verdict = asyncio.run(authorize(review(aws), None, WebhookSettings()))
    assert verdict.allowed


def test_auth_allows_objects_reaching_no_namespace_without_asking() -> None:
    azure = {
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "AzureChaos", "metadata": {"name": "a", "namespace": "ops"},
        "spec": {"action": "vm-stop", "subscriptionID": "s", "resourceGroupName": "g", "vmName": "v"},
    }
    assert asyncio.run(authorize(review(azure), None, WebhookSettings())).allowed


def test_auth_refuses_an_unknown_kind_and_explains_an_unparsable_object() -> None:
    unknown = network_chaos() | {"kind": "ToasterChaos"}
    verdict = asyncio.run(authorize(review(unknown), None, WebhookSettings()))
    assert (verdict.allowed, verdict.code) == (False, 400)
    bad = asyncio.run(authorize(review(network_chaos(delay={"latency": "10x"})), None, WebhookSettings()))
    assert not bad.allowed
    assert bad.message.startswith('spec.delay.latency: "10x"')


# --- the envelope, the app and the configurations


def test_response_carries_the_patch_as_base64_json_patch() -> None:
    request = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": review(network_chaos())
               .model_dump(by_alias=True)}
    parsed = AdmissionReview.model_validate(request)
    answer = review_response(parsed, Verdict(True, patch=[{"op": "add", "path": "/spec/x", "value": 1}]))
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == "7d1c"
    assert answer["response"]["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["response"]["patch"])) == [{"op": "add", "path": "/spec/x", "value": 1}]
    denied = review_response(parsed, Verdict.invalid("spec.value: bad"))
    assert denied["response"] == {"uid": "7d1c", "allowed": False,
                                  "status": {"code": 422, "message": "spec.value: bad", "reason": "Invalid"}}


def body(request: AdmissionRequest) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": request.model_dump(by_alias=True, mode="json")}


async def exercise_app() -> None:
    app = create_app(WebhookSettings(auth=False, filter_namespaces=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks") as client:
        assert (await client.get("/healthz")).text == "ok"
        answer = (await client.post(MUTATE_PREFIX + "networkchaos", json=body(review(network_chaos())))).json()
        assert answer["response"]["allowed"] is True
        patch = json.loads(base64.b64decode(answer["response"]["patch"]))
        assert {"op": "add", "path": "/spec/selector/namespaces", "value": ["web"]} in patch
        invalid = body(review(network_chaos(mode="all", value=None, direction="from")))
        refused = (await client.post(VALIDATE_PREFIX + "networkchaos", json=invalid)).json()
        assert refused["response"]["allowed"] is False
        assert refused["response"]["status"]["message"].startswith('spec.direction: "from" needs a target')
        # With the rights check and the namespace filter off, the auth webhook lets everything through.
        assert (await client.post(AUTH_PATH, json=body(review(network_chaos())))).json()["response"]["allowed"]
        for kind in kinds():
            not_a_review = await client.post(VALIDATE_PREFIX + kind.lower(), json={})
            assert not_a_review.status_code == 400
            assert not_a_review.json()["detail"].startswith("not an AdmissionReview")
        unknown = await client.post(VALIDATE_PREFIX + "toasterchaos", json=body(review(network_chaos())))
        assert unknown.status_code == 404


def test_app_serves_every_kinds_paths() -> None:
    asyncio.run(exercise_app())


def test_configurations_follow_chaos_mesh_layout() -> None:
    mutating, validating, auth = webhook_configurations(
        ca_bundle=b"PEM", service=ServiceRef("chaos-mesh", "faultmesh-webhook"),
        namespace_selector={"matchLabels": {"x": "y"}},
    )
    assert [w["name"] for w in mutating["webhooks"]] == [f"m{kind.lower()}.faultmesh.io" for kind in WEBHOOK_KINDS]
    network = next(w for w in validating["webhooks"] if w["name"] == "vnetworkchaos.faultmesh.io")
    assert network["clientConfig"] == {
        "service": {"namespace": "chaos-mesh", "name": "faultmesh-webhook", "port": 443,
                    "path": "/validate-chaos-mesh-org-v1alpha1-networkchaos"},
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert network["rules"][0]["resources"] == ["networkchaos"]
    schedule = next(w for w in mutating["webhooks"] if w["name"] == "mschedule.faultmesh.io")
    assert schedule["rules"][0]["resources"] == ["schedules"]
    assert auth["webhooks"][0]["clientConfig"]["service"]["path"] == "/validate-auth"
    assert auth["webhooks"][0]["rules"][0]["resources"] == ["*"]
    assert all(w["namespaceSelector"] == {"matchLabels": {"x": "y"}} for w in validating["webhooks"])
    with pytest.raises(ValueError, match="exactly one"):
        webhook_configurations()
    with pytest.raises(ValueError, match="ToasterChaos"):
        webhook_configurations(url="https://x", kinds_served=("ToasterChaos",))
