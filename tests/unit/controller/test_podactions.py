"""pod-failure's image swap as data (Chaos Mesh's annotation keys, the JSON patch), and the actions' control flow.

The patches are applied here by a small RFC 6902 interpreter so that a fail → restore round trip can be checked
on arbitrary pods; the cluster tier (tests/cluster/test_controller_podactions.py) applies them to real pods.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.controller.kube import Kube, KubeError
from faultmesh.controller.podactions import (
    CONFLICT_ATTEMPTS,
    DEFAULT_PAUSE_IMAGE,
    PAUSE_IMAGE_ENV,
    Outcome,
    configured_pause_image,
    fail_pod,
    image_annotation_key,
    kill_pod,
    plan_failure,
    plan_restore,
    restore_pod,
    swap_basis,
)

PAUSE = "faultmesh.local/pause:latest"


def pod(containers: dict[str, str], init: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        uid: str = "uid-1", resource_version: str = "7") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web-0", "namespace": "shop", "uid": uid, "resourceVersion": resource_version}
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {"containers": [{"name": n, "image": i} for n, i in containers.items()]}
    if init:
        spec["initContainers"] = [{"name": n, "image": i} for n, i in init.items()]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """add / remove / replace / test on dicts and lists, enough to check the patches this module makes."""
    result = copy.deepcopy(document)
    for op in operations:
        *parents, last = [_unescape(t) for t in op["path"].split("/")[1:]]
        node: Any = result
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            assert node[key] == op["value"], f"test {op['path']} failed"
        elif op["op"] == "remove":
            del node[key]
        elif op["op"] == "replace":
            assert isinstance(node, list) or key in node, f"replace of missing {op['path']}"
            node[key] = op["value"]
        else:
            assert op["op"] == "add"
            node[key] = op["value"]
    return result


def patched(document: dict[str, Any], swap: Any) -> dict[str, Any]:
    metadata = document["metadata"]
    return apply_json_patch(document, swap.operations(metadata["resourceVersion"], "annotations" in metadata))


# ---- annotation keys --------------------------------------------------------------------------------------


def test_annotation_key_is_chaos_meshs_for_containers_and_init_containers() -> None:
    assert image_annotation_key("web-fail", "nginx", init=False) == "chaos-mesh-web-fail-pod-failure-nginx-normal-image"
    assert image_annotation_key("web-fail", "setup", init=True) == "chaos-mesh-web-fail-pod-failure-setup-init-image"


def test_annotation_key_longer_than_63_falls_back_to_the_container_part() -> None:
    # 63 characters exactly is still a valid name part and is kept whole.
    name = "c" * (63 - len("chaos-mesh--pod-failure-app-normal-image"))
    assert len(image_annotation_key(name, "app", init=False)) == 63
    assert image_annotation_key(name, "app", init=False).startswith("chaos-mesh-c")
    assert image_annotation_key(name + "x", "app", init=False) == "app-normal"
    # "-init" is two characters shorter than "-normal".
    assert image_annotation_key(name + "xx", "app", init=True).endswith("-app-init-image")
    assert image_annotation_key(name + "xxx", "app", init=True) == "app-init"


def test_pause_image_setting_reads_chaos_meshs_variable() -> None:
    assert configured_pause_image({}) == DEFAULT_PAUSE_IMAGE == "gcr.io/google-containers/pause:latest"
    assert configured_pause_image({PAUSE_IMAGE_ENV: " registry.local/pause:3.9 "}) == "registry.local/pause:3.9"
    assert configured_pause_image({PAUSE_IMAGE_ENV: ""}) == DEFAULT_PAUSE_IMAGE


# ---- planning and patches ----------------------------------------------------------------------------------


def test_failure_saves_every_original_and_swaps_in_one_conditional_patch() -> None:
    original = pod({"app": "shop/app:1", "sidecar": "envoy:1.29"}, init={"migrate": "shop/migrate:1"})
    swap = plan_failure(original, "web-fail", PAUSE)
    operations = swap.operations("7", has_annotations=False)
    assert operations[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}
    assert operations[1] == {"op": "add", "path": "/metadata/annotations", "value": {}}
    # Annotations are written before any image in the same patch: never a pause image without its original.
    first_image = next(i for i, op in enumerate(operations) if op["path"].endswith("/image"))
    last_annotation = max(i for i, op in enumerate(operations) if op["path"].startswith("/metadata/annotations/"))
    assert last_annotation < first_image
    assert {"op": "test", "path": "/spec/initContainers/0/name", "value": "migrate"} in operations

    failed = patched(original, swap)
    assert [c["image"] for c in failed["spec"]["containers"] + failed["spec"]["initContainers"]] == [PAUSE] * 3
    assert failed["metadata"]["annotations"] == {
        "chaos-mesh-web-fail-pod-failure-app-normal-image": "shop/app:1",
        "chaos-mesh-web-fail-pod-failure-sidecar-normal-image": "envoy:1.29",
        "chaos-mesh-web-fail-pod-failure-migrate-init-image": "shop/migrate:1",
    }


def test_failure_twice_changes_nothing_and_never_saves_the_pause_image() -> None:
    failed = patched(pod({"app": "shop/app:1"}), plan_failure(pod({"app": "shop/app:1"}), "f", PAUSE))
    assert plan_failure(failed, "f", PAUSE).empty
    # Someone put the original image back by hand: it is swapped again, the saved original is kept.
    failed["spec"]["containers"][0]["image"] = "shop/app:1"
    again = plan_failure(failed, "f", PAUSE)
    assert dict(again.annotations or {}) == {}
    assert [(c.name, c.image) for c in again.images] == [("app", PAUSE)]


def test_failure_keeps_existing_annotations_and_only_adds_its_keys() -> None:
    original = pod({"app": "shop/app:1"}, annotations={"team": "checkout"})
    operations = plan_failure(original, "f", PAUSE).operations("7", has_annotations=True)
    assert not any(op["path"] == "/metadata/annotations" for op in operations)
    failed = apply_json_patch(original, operations)
    assert failed["metadata"]["annotations"]["team"] == "checkout"


def test_restore_puts_the_originals_back_and_removes_only_its_keys() -> None:
    original = pod({"app": "shop/app:1", "sidecar": "envoy:1.29"}, annotations={"team": "checkout"})
    failed = patched(original, plan_failure(original, "f", PAUSE))
    # Another experiment's saved image on the same pod stays untouched.
    failed["metadata"]["annotations"]["chaos-mesh-other-pod-failure-app-normal-image"] = "x"
    restored = patched(failed, plan_restore(failed, "f"))
    assert [c["image"] for c in restored["spec"]["containers"]] == ["shop/app:1", "envoy:1.29"]
    assert restored["metadata"]["annotations"] == {"team": "checkout",
                                                   "chaos-mesh-other-pod-failure-app-normal-image": "x"}
    assert plan_restore(restored, "f").empty


def test_restore_of_a_pod_never_failed_is_empty() -> None:
    assert plan_restore(pod({"app": "shop/app:1"}), "f").empty


def test_named_containers_only() -> None:
    original = pod({"app": "shop/app:1", "sidecar": "envoy:1.29"})
    failed = patched(original, plan_failure(original, "f", PAUSE, containers={"sidecar"}))
    assert [c["image"] for c in failed["spec"]["containers"]] == ["shop/app:1", PAUSE]
    assert list(failed["metadata"]["annotations"]) == ["chaos-mesh-f-pod-failure-sidecar-normal-image"]


names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
images = st.from_regex(r"[a-z0-9.]{1,10}(/[a-z0-9]{1,8})?:[a-z0-9.]{1,6}", fullmatch=True)


@given(
    containers=st.dictionaries(names, images, min_size=1, max_size=4),
    init=st.dictionaries(names, images, max_size=2),
    chaos=names,
    twice=st.booleans(),
)
def test_fail_then_restore_gives_back_the_pod(
    containers: dict[str, str], init: dict[str, str], chaos: str, twice: bool
) -> None:
    init = {f"init-{name}": image for name, image in init.items()}  # names are unique across both lists
    original = pod(containers, init)
    failed = patched(original, plan_failure(original, chaos, PAUSE))
    if twice:
        assert plan_failure(failed, chaos, PAUSE).empty
    every = failed["spec"]["containers"] + failed["spec"].get("initContainers", [])
    assert all(c["image"] == PAUSE for c in every)
    restored = patched(failed, plan_restore(failed, chaos))
    restored["metadata"].pop("annotations")
    assert restored == original


@given(
    containers=st.dictionaries(names, images, min_size=1, max_size=3),
    init=st.dictionaries(names, images, max_size=2),
    annotations=st.none() | st.dictionaries(names, images, max_size=2),
    chaos=names,
    failed_first=st.booleans(),
)
def test_the_swap_basis_plans_what_the_whole_pod_plans(
    containers: dict[str, str], init: dict[str, str], annotations: dict[str, str] | None, chaos: str,
    failed_first: bool,
) -> None:
    whole = pod(containers, {f"init-{name}": image for name, image in init.items()}, annotations)
    whole["metadata"].update(labels={"app": "web"}, ownerReferences=[{"kind": "ReplicaSet", "name": "web"}])
    for container in whole["spec"]["containers"]:
        container.update(env=[{"name": "MODE", "value": "prod"}], ports=[{"containerPort": 8080}])
    whole["status"] = {"phase": "Running", "podIP": "10.0.0.7"}
    if failed_first:
        whole = patched(whole, plan_failure(whole, chaos, PAUSE))
    basis = swap_basis(whole)
    assert plan_failure(basis, chaos, PAUSE) == plan_failure(whole, chaos, PAUSE)
    assert plan_restore(basis, chaos) == plan_restore(whole, chaos)
    assert plan_failure(basis, chaos, PAUSE, containers=set(containers)) == \
        plan_failure(whole, chaos, PAUSE, containers=set(containers))
    for key in ("uid", "resourceVersion", "name", "namespace"):
        assert basis["metadata"][key] == whole["metadata"][key]
    assert ("annotations" in basis["metadata"]) == ("annotations" in whole["metadata"])
    assert "status" not in basis and "env" not in basis["spec"]["containers"][0]


# ---- the actions' control flow against a scripted API door --------------------------------------------------


class ScriptedKube:
    """Answers get/json_patch/delete from a script; records the calls. Real API behaviour is the cluster tier's."""

    def __init__(self, pods: list[dict[str, Any] | KubeError], patches: list[KubeError | None] | None = None,
                 delete: dict[str, Any] | KubeError | None = None) -> None:
        self.pods = pods
        self.patches = patches or []
        self.delete_answer = delete
        self.calls: list[tuple[str, Any]] = []

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.calls.append(("get", name))
        answer = self.pods.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        return answer

    async def json_patch(self, resource: Any, name: str, operations: Any, namespace: str | None = None) -> Any:
        self.calls.append(("patch", operations))
        answer = self.patches.pop(0) if self.patches else None
        if isinstance(answer, KubeError):
            raise answer
        return {}

    async def delete(self, resource: Any, name: str, namespace: str | None = None, **options: Any) -> Any:
        self.calls.append(("delete", options))
        if isinstance(self.delete_answer, KubeError):
            raise self.delete_answer
        return self.delete_answer


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def as_kube(scripted: ScriptedKube) -> Kube:
    return cast(Kube, scripted)


def test_a_conflict_is_planned_again_from_the_new_version() -> None:
    first, second = pod({"app": "a:1"}, resource_version="7"), pod({"app": "a:1"}, resource_version="8")
    kube = ScriptedKube([first, second], patches=[KubeError("conflict", status=409), None])
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE)) is Outcome.CHANGED
    patches = [ops for call, ops in kube.calls if call == "patch"]
    assert [ops[0]["value"] for ops in patches] == ["7", "8"]


def test_endless_conflicts_end_in_a_clear_409() -> None:
    kube = ScriptedKube([pod({"app": "a:1"})] * CONFLICT_ATTEMPTS,
                        patches=[KubeError("conflict", status=409)] * CONFLICT_ATTEMPTS)
    with pytest.raises(KubeError) as caught:
        run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE))
    assert caught.value.status == 409
    assert f"pod shop/web-0: the pod changed {CONFLICT_ATTEMPTS} times" in str(caught.value)


def test_a_pod_gone_or_replaced_counts_as_gone() -> None:
    missing = KubeError("get pods shop/web-0: pods \"web-0\" not found", status=404)
    assert run(restore_pod(as_kube(ScriptedKube([missing])), "shop", "web-0", chaos_name="f")) is Outcome.GONE
    namesake = pod({"app": PAUSE}, annotations={"chaos-mesh-f-pod-failure-app-normal-image": "a:1"}, uid="uid-2")
    kube = ScriptedKube([namesake])
    assert run(restore_pod(as_kube(kube), "shop", "web-0", chaos_name="f", uid="uid-1")) is Outcome.GONE
    assert [call for call, _ in kube.calls] == ["get"]  # the namesake is not touched
    vanished = ScriptedKube([pod({"app": "a:1"})], patches=[KubeError("gone", status=404)])
    assert run(fail_pod(as_kube(vanished), "shop", "web-0", chaos_name="f", pause_image=PAUSE)) is Outcome.GONE


def test_other_api_errors_propagate() -> None:
    kube = ScriptedKube([pod({"app": "a:1"})], patches=[KubeError("forbidden", status=403)])
    with pytest.raises(KubeError, match="forbidden"):
        run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE))


def test_a_watched_copy_saves_the_read() -> None:
    kube = ScriptedKube([])
    watched = swap_basis(pod({"app": "a:1"}, resource_version="12"))
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE, watched=watched)) \
        is Outcome.CHANGED
    assert [call for call, _ in kube.calls] == ["patch"]
    assert kube.calls[0][1][0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "12"}
    failed = swap_basis(patched(pod({"app": "a:1"}), plan_failure(pod({"app": "a:1"}), "f", PAUSE)))
    kube = ScriptedKube([])
    assert run(restore_pod(as_kube(kube), "shop", "web-0", chaos_name="f", watched=failed)) is Outcome.CHANGED
    assert [call for call, _ in kube.calls] == ["patch"]


def test_a_stale_watched_copy_is_refused_and_the_pod_read_and_planned_again() -> None:
    stale = swap_basis(pod({"app": "a:1"}, resource_version="7"))
    kube = ScriptedKube([pod({"app": "a:2"}, resource_version="9")], patches=[KubeError("conflict", status=409)])
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE, watched=stale)) \
        is Outcome.CHANGED
    assert [call for call, _ in kube.calls] == ["patch", "get", "patch"]
    last = kube.calls[-1][1]
    assert last[0]["value"] == "9"
    assert {"op": "add", "path": "/metadata/annotations/chaos-mesh-f-pod-failure-app-normal-image",
            "value": "a:2"} in last
    # The stale copy does not count as one of the conflicts: the pod itself may still change that often.
    kube = ScriptedKube([pod({"app": "a:1"})] * CONFLICT_ATTEMPTS,
                        patches=[KubeError("conflict", status=409)] * (CONFLICT_ATTEMPTS + 1))
    with pytest.raises(KubeError, match=f"changed {CONFLICT_ATTEMPTS} times"):
        run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE, watched=stale))
    assert [call for call, _ in kube.calls].count("get") == CONFLICT_ATTEMPTS


def test_nothing_to_do_on_the_watched_copy_is_asked_of_the_server() -> None:
    # The watch may not show yet that the images were put back: only the server's copy can say "unchanged".
    original = pod({"app": "a:1"})
    failed = patched(original, plan_failure(original, "f", PAUSE))
    kube = ScriptedKube([original])
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE,
                        watched=swap_basis(failed))) is Outcome.CHANGED
    assert [call for call, _ in kube.calls] == ["get", "patch"]
    kube = ScriptedKube([failed])
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE,
                        watched=swap_basis(failed))) is Outcome.UNCHANGED
    assert [call for call, _ in kube.calls] == ["get"]


def test_a_watched_copy_of_another_uid_or_a_vanished_pod() -> None:
    namesake = swap_basis(pod({"app": "a:1"}, uid="uid-2"))
    kube = ScriptedKube([pod({"app": "a:1"}, uid="uid-1")])
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE, uid="uid-1",
                        watched=namesake)) is Outcome.CHANGED
    assert [call for call, _ in kube.calls] == ["get", "patch"]
    kube = ScriptedKube([], patches=[KubeError("gone", status=404)])
    assert run(fail_pod(as_kube(kube), "shop", "web-0", chaos_name="f", pause_image=PAUSE,
                        watched=swap_basis(pod({"app": "a:1"})))) is Outcome.GONE
    assert [call for call, _ in kube.calls] == ["patch"]


def test_kill_passes_the_grace_period_and_the_uid_precondition() -> None:
    kube = ScriptedKube([], delete={"kind": "Pod"})
    assert run(kill_pod(as_kube(kube), "shop", "web-0", 0, uid="uid-1")) is Outcome.CHANGED
    assert kube.calls == [("delete", {"grace_period_seconds": 0, "uid": "uid-1", "missing_ok": True})]
    assert run(kill_pod(as_kube(ScriptedKube([], delete=None)), "shop", "web-0", 5)) is Outcome.GONE
    precondition = KubeError("Precondition failed: UID in precondition: uid-1, UID in object meta: uid-2", status=409)
    assert run(kill_pod(as_kube(ScriptedKube([], delete=precondition)), "shop", "web-0", 5, uid="uid-1")) \
        is Outcome.GONE
    with pytest.raises(ValueError, match="grace period -1 must be 0 or more seconds"):
        run(kill_pod(as_kube(ScriptedKube([])), "shop", "web-0", -1))
