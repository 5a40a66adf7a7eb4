"""BlockChaos: action, volume, delay distribution and its defaults, status, SDK use."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.blockchaos import BlockChaos, BlockChaosSpec, BlockChaosStatus, BlockDelaySpec
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object


def _block(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "BlockChaos",
        "metadata": {"name": "slow-disk", "namespace": "db"},
        "spec": {
            "mode": "all",
            "selector": {"labelSelectors": {"app": "db"}},
            "volumeName": "data",
            "action": "delay",
            "delay": {"latency": "10ms"},
            **spec,
        },
    }


def _load(spec: dict[str, Any]) -> BlockChaos:
    obj = parse_object(_block(spec))
    assert isinstance(obj, BlockChaos)
    return obj


def _problems(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(_block(spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def test_crd_shape() -> None:
    schema = crd_for(BlockChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert sorted(spec["required"]) == ["action", "mode", "selector", "volumeName"]
    assert spec["properties"]["action"]["enum"] == ["delay"]
    assert sorted(spec["properties"]["delay"]["properties"]) == ["correlation", "jitter", "latency"]
    ids = schema["properties"]["status"]["properties"]["ids"]
    assert ids["additionalProperties"] == {"type": "integer"}


def test_delay_defaults_as_chaos_mesh() -> None:
    chaos = _load({})
    assert chaos.spec.delay == BlockDelaySpec(latency="10ms", correlation="0", jitter="0ms")
    assert chaos.spec.selector.namespaces == ["db"]
    assert chaos.to_dict()["spec"]["delay"] == {"latency": "10ms", "correlation": "0", "jitter": "0ms"}


def test_empty_jitter_and_correlation_take_the_defaults() -> None:
    chaos = _load({"delay": {"latency": "1s", "jitter": "", "correlation": ""}})
    assert chaos.spec.delay is not None
    assert (chaos.spec.delay.jitter, chaos.spec.delay.correlation) == ("0ms", "0")


def test_action_delay_needs_delay() -> None:
    data = _block({})
    del data["spec"]["delay"]
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    assert [(format_path(p.path), p.message) for p in caught.value.problems] == [
        ("spec.delay", "is required with action delay")
    ]


@pytest.mark.parametrize("action", ["limit", "Delay", ""])
def test_unknown_actions_are_refused(action: str) -> None:
    assert "is not one of 'delay'" in _problems({"action": action})["spec.action"]


def test_volume_name_is_required_and_not_empty() -> None:
    data = _block({})
    del data["spec"]["volumeName"]
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    assert [format_path(p.path) for p in caught.value.problems] == ["spec.volumeName"]
    assert _problems({"volumeName": ""}) == {
        "spec.volumeName": "is empty: name the pod volume whose block device is delayed"
    }


@pytest.mark.parametrize("latency", ["1s", "500us", "0"])
def test_good_latencies(latency: str) -> None:
    chaos = _load({"delay": {"latency": latency}})
    assert chaos.spec.delay is not None and chaos.spec.delay.latency == latency


def test_latency_is_needed_for_a_delay() -> None:
    assert _problems({"delay": {"jitter": "1ms"}}) == {
        "spec.delay.latency": 'is required: the delay each request gets, e.g. "100ms"'
    }


@pytest.mark.parametrize(
    ("delay", "field", "message"),
    [
        ({"latency": "1SSS"}, "latency", '"1SSS" is not a duration'),
        ({"latency": "-1s"}, "latency", '"-1s" is negative'),
        ({"latency": "1s", "jitter": "5"}, "jitter", '"5" is not a duration'),
        ({"latency": "1s", "jitter": "-5ms"}, "jitter", '"-5ms" is negative'),
        ({"latency": "1s", "correlation": "high"}, "correlation", '"high" is not a number'),
        ({"latency": "1s", "correlation": "101"}, "correlation", '"101" is not a percent in 0..100'),
    ],
)
def test_bad_delays_are_refused(delay: dict[str, Any], field: str, message: str) -> None:
    problems = _problems({"delay": delay})
    assert message in problems[f"spec.delay.{field}"]


def test_mode_value_and_duration_rules_apply() -> None:
    assert "must be greater than 0" in _problems({"mode": "fixed", "value": "0"})["spec.value"]
    assert "spec.duration" in _problems({"duration": "400S"})


def test_status_ids() -> None:
    chaos = BlockChaos.model_validate({**_block({}), "status": {"experiment": {}, "ids": {"db/db-0/main": 7}}})
    assert isinstance(chaos.status, BlockChaosStatus)
    assert chaos.status.injection_ids == {"db/db-0/main": 7}
    assert chaos.to_dict()["status"]["ids"] == {"db/db-0/main": 7}


def test_sdk_round_trip() -> None:
    chaos = BlockChaos(
        metadata=ObjectMeta(name="hostpath-example-delay", namespace="default"),
        spec=BlockChaosSpec(
            mode="all",
            selector=PodSelectorSpec(label_selectors={"app": "hostpath-example"}),
            volume_name="hostpath-example",
            action="delay",
            delay=BlockDelaySpec(latency="1s", jitter="100ms", correlation="25"),
            container_names=["app"],
        ),
    )
    assert validate_object(chaos) == []
    data = chaos.to_dict()
    assert data["spec"]["volumeName"] == "hostpath-example"
    assert data["spec"]["delay"] == {"latency": "1s", "correlation": "25", "jitter": "100ms"}
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert isinstance(again, BlockChaos)
    assert again.to_dict() == data
