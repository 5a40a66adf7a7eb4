"""KernelChaos: the fail-kern-request bounds, call chain frames, and SDK use."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.kernelchaos import FAIL_TYPES, FailKernRequest, Frame, KernelChaos, KernelChaosSpec
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object


def _kernel(request: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "KernelChaos",
        "metadata": {"name": "slab", "namespace": "db"},
        "spec": {"mode": "one", "selector": {}, "failKernRequest": {"failtype": 0, **request}, **spec},
    }


def _load(request: dict[str, Any], **spec: Any) -> KernelChaos:
    obj = parse_object(_kernel(request, **spec))
    assert isinstance(obj, KernelChaos)
    return obj


def _problems(request: dict[str, Any], **spec: Any) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(_kernel(request, **spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def test_crd_bounds_match_chaos_mesh() -> None:
    spec = crd_for(KernelChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    request = spec["properties"]["failKernRequest"]
    assert request["required"] == ["failtype"]
    properties = request["properties"]
    assert (properties["failtype"]["minimum"], properties["failtype"]["maximum"]) == (0, 2)
    assert (properties["probability"]["minimum"], properties["probability"]["maximum"]) == (0, 100)
    assert properties["times"]["minimum"] == 0 and "maximum" not in properties["times"]
    assert {properties[name]["format"] for name in ("failtype", "probability", "times")} == {"int32"}
    assert sorted(properties["callchain"]["items"]["properties"]) == ["funcname", "parameters", "predicate"]
    assert sorted(spec["required"]) == ["failKernRequest", "mode", "selector"]


def test_defaults() -> None:
    chaos = _load({})
    assert chaos.spec.selector.namespaces == ["db"]
    request = chaos.spec.fail_kern_request
    assert (request.probability, request.times, request.callchain, request.headers) == (None, None, None, None)


@pytest.mark.parametrize("failtype", sorted(FAIL_TYPES))
def test_every_fail_type_is_accepted(failtype: int) -> None:
    assert _load({"failtype": failtype}).spec.fail_kern_request.failtype == failtype


@pytest.mark.parametrize(("failtype", "message"), [(3, "less than or equal to 2"), (-1, "greater than or equal to 0")])
def test_fail_types_out_of_range_are_refused(failtype: int, message: str) -> None:
    assert message in _problems({"failtype": failtype})["spec.failKernRequest.failtype"]


def test_fail_type_is_required() -> None:
    data = _kernel({})
    del data["spec"]["failKernRequest"]["failtype"]
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    assert [format_path(problem.path) for problem in caught.value.problems] == ["spec.failKernRequest.failtype"]


def test_fail_kern_request_is_required() -> None:
    data = _kernel({})
    del data["spec"]["failKernRequest"]
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    assert {format_path(problem.path): problem.message for problem in caught.value.problems} == {
        "spec.failKernRequest": "is required"
    }


@pytest.mark.parametrize("probability", [0, 1, 100])
def test_probability_bounds_accept(probability: int) -> None:
    assert _load({"probability": probability}).spec.fail_kern_request.probability == probability


@pytest.mark.parametrize("probability", [-1, 101])
def test_probability_bounds_refuse(probability: int) -> None:
    assert "spec.failKernRequest.probability" in _problems({"probability": probability})


def test_times_must_not_be_negative() -> None:
    assert _load({"times": 0}).spec.fail_kern_request.times == 0
    assert "greater than or equal to 0" in _problems({"times": -5})["spec.failKernRequest.times"]


def test_call_chain_frames() -> None:
    chain = [
        {"funcname": "ext4_mount"},
        {"funcname": "mount_subtree"},
        {
            "funcname": "d_alloc_parallel",
            "parameters": "struct dentry *parent, const struct qstr *name",
            "predicate": 'STRNCMP(name->name, "bananas", 8)',
        },
        {"funcname": "ext4_find_entry.isra.0"},
    ]
    chaos = _load({"callchain": chain, "headers": ["linux/mmzone.h"]})
    frames = chaos.spec.fail_kern_request.callchain
    assert frames is not None and [frame.funcname for frame in frames] == [
        "ext4_mount",
        "mount_subtree",
        "d_alloc_parallel",
        "ext4_find_entry.isra.0",
    ]
    assert chaos.to_dict()["spec"]["failKernRequest"]["callchain"] == chain


def test_call_chain_frames_name_a_function() -> None:
    problems = _problems({"callchain": [{"funcname": "ext4_mount"}, {"predicate": "1"}, {"funcname": "do mount"}]})
    assert problems == {
        "spec.failKernRequest.callchain[1].funcname": "is required: each frame of a call chain names a kernel function",
        "spec.failKernRequest.callchain[2].funcname": '"do mount" is not a kernel function name (e.g. ext4_mount)',
    }


def test_mode_and_duration_rules_apply() -> None:
    problems = _problems({}, mode="random-max-percent", value="0", duration="1 hour")
    assert set(problems) == {"spec.duration"}  # a type error stops before the rules
    problems = _problems({}, mode="random-max-percent", value="0")
    assert "must be in (0,100]" in problems["spec.value"]


def test_sdk_round_trip() -> None:
    chaos = KernelChaos(
        metadata=ObjectMeta(name="fail-slab", namespace="db"),
        spec=KernelChaosSpec(
            mode="one",
            selector=PodSelectorSpec(label_selectors={"app": "db"}),
            fail_kern_request=FailKernRequest(
                failtype=0,
                callchain=[Frame(funcname="ext4_mount")],
                probability=10,
                times=100,
            ),
            duration="30s",
        ),
    )
    assert validate_object(chaos) == []
    data = chaos.to_dict()
    assert data["spec"]["failKernRequest"] == {
        "failtype": 0,
        "callchain": [{"funcname": "ext4_mount"}],
        "probability": 10,
        "times": 100,
    }
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert isinstance(again, KernelChaos)
    assert again.to_dict() == data
