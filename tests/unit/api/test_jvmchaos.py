"""JVMChaos: per-action required fields, agent port, defaults, the legacy return value, SDK use."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.jvmchaos import DEFAULT_JVM_AGENT_PORT, JVMChaos, JVMChaosSpec
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object


def _jvm(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "JVMChaos",
        "metadata": {"name": "jvm", "namespace": "helloworld"},
        "spec": {"mode": "all", "selector": {}, **spec},
    }


def _load(spec: dict[str, Any]) -> JVMChaos:
    obj = parse_object(_jvm(spec))
    assert isinstance(obj, JVMChaos)
    return obj


def _problems(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(_jvm(spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


METHOD = {"class": "Main", "method": "sayhello"}

VALID: dict[str, dict[str, Any]] = {
    "latency": {**METHOD, "latency": 500},
    "return": {**METHOD, "returnValue": "9999"},
    "exception": {**METHOD, "exception": 'java.io.IOException("BOOM")'},
    "stress-cpu": {"action": "stress", "cpuCount": 2},
    "stress-mem": {"action": "stress", "memType": "heap"},
    "gc": {},
    "ruleData": {"ruleData": "RULE r\nCLASS Main\nMETHOD m\nAT ENTRY\nIF true\nDO return 1\nENDRULE"},
    "mysql-exception": {"action": "mysql", "mysqlConnectorVersion": "8", "exception": "BOOM", "sqlType": "select"},
    "mysql-latency": {"action": "mysql", "mysqlConnectorVersion": "5", "latency": 100, "database": "test"},
}


def test_crd_uses_chaos_mesh_json_names() -> None:
    schema = crd_for(JVMChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "required" not in schema  # Chaos Mesh's CRD lets spec be absent
    properties = schema["properties"]["spec"]["properties"]
    for name in (
        "class",
        "returnValue",
        "exception",
        "latency",
        "ruleData",
        "memType",
        "cpuCount",
        "mysqlConnectorVersion",
        "sqlType",
        "pid",
        "port",
        "name",
    ):
        assert name in properties, name
    assert "class_" not in properties
    assert properties["port"]["format"] == "int32"
    assert properties["latency"] == {"description": properties["latency"]["description"], "type": "integer"}
    assert properties["action"]["enum"] == ["latency", "return", "exception", "stress", "gc", "ruleData", "mysql"]


@pytest.mark.parametrize("case", sorted(VALID))
def test_each_action_with_its_fields_is_accepted(case: str) -> None:
    spec = {"action": case.partition("-")[0], **VALID[case]}
    chaos = _load(spec)
    assert chaos.spec.action == spec["action"]


def test_defaults_port_and_rule_name() -> None:
    chaos = _load({"action": "latency", **VALID["latency"]})
    assert chaos.spec.port == DEFAULT_JVM_AGENT_PORT == 9277
    assert chaos.spec.name is not None
    assert re.fullmatch(r"Main-sayhello-latency-\d+", chaos.spec.name)
    assert chaos.spec.selector.namespaces == ["helloworld"]


def test_port_zero_means_the_default_and_a_given_name_is_kept() -> None:
    chaos = _load({"action": "gc", "port": 0, "name": "my-rule"})
    assert chaos.spec.port == 9277 and chaos.spec.name == "my-rule"


@pytest.mark.parametrize("port", [-1, 65536])
def test_ports_out_of_range_are_refused(port: int) -> None:
    assert _problems({"action": "gc", "port": port}) == {
        "spec.port": f"{port} is not a TCP port; use 1-65535 (the agent's default is 9277)"
    }


@pytest.mark.parametrize("field", ["pid", "cpuCount", "latency"])
def test_negative_numbers_are_refused(field: str) -> None:
    assert _problems({"action": "gc", field: -3})[f"spec.{field}"] == "-3 is negative; it must be ≥ 0"


@pytest.mark.parametrize("action", ["latency", "return", "exception"])
def test_method_actions_need_class_and_method(action: str) -> None:
    problems = _problems({"action": action})
    assert problems["spec.class"].startswith(f"is required with action {action}")
    assert problems["spec.method"].startswith(f"is required with action {action}")


@pytest.mark.parametrize(
    ("action", "field"), [("latency", "latency"), ("return", "returnValue"), ("exception", "exception")]
)
def test_method_actions_need_their_own_field(action: str, field: str) -> None:
    problems = _problems({"action": action, **METHOD})
    assert list(problems) == [f"spec.{field}"]
    assert problems[f"spec.{field}"].startswith(f"is required with action {action}")


def test_latency_zero_counts_as_missing() -> None:
    assert "spec.latency" in _problems({"action": "latency", **METHOD, "latency": 0})


def test_rule_data_action_needs_rule_data() -> None:
    assert _problems({"action": "ruleData"}) == {
        "spec.ruleData": "is required with action ruleData: the Byteman rule to install"
    }


def test_stress_needs_exactly_one_of_cpu_and_memory() -> None:
    assert _problems({"action": "stress"}) == {"spec": "set cpuCount or memType with action stress"}
    assert _problems({"action": "stress", "cpuCount": 1, "memType": "heap"}) == {
        "spec.memType": "cannot be set together with cpuCount: stress either CPU or memory"
    }
    assert _problems({"action": "stress", "memType": "disk"}) == {
        "spec.memType": '"disk" is not a memory type; use stack or heap'
    }


def test_mysql_rules() -> None:
    assert _problems({"action": "mysql", "exception": "BOOM"}) == {
        "spec.mysqlConnectorVersion": 'is required with action mysql: "5" or "8"'
    }
    assert _problems({"action": "mysql", "mysqlConnectorVersion": "8.0.33", "latency": 10}) == {
        "spec.mysqlConnectorVersion": '"8.0.33" is not supported; use "5" (for 5.x.x) or "8" (for 8.x.x)'
    }
    assert _problems({"action": "mysql", "mysqlConnectorVersion": "5"}) == {
        "spec": "set exception or latency with action mysql"
    }
    problems = _problems({"action": "mysql", "mysqlConnectorVersion": "5", "latency": 5, "sqlType": "SELECT"})
    assert problems["spec.sqlType"].startswith('"SELECT" is not an SQL type')


@pytest.mark.parametrize("action", ["ruledata", "delay", ""])
def test_unknown_actions_are_refused(action: str) -> None:
    assert "is not one of" in _problems({"action": action})["spec.action"]


def test_legacy_value_is_taken_as_the_return_value() -> None:
    # Chaos Mesh before 2.7.1 spelled returnValue "value" (its own jvm-return-example.yaml still does).
    chaos = _load({"action": "return", **METHOD, "value": "9999"})
    assert chaos.spec.return_value == "9999"
    assert chaos.to_dict()["spec"]["returnValue"] == "9999"


def test_legacy_value_is_not_taken_when_the_mode_uses_it() -> None:
    problems = _problems({"action": "return", **METHOD, "mode": "fixed", "value": "2"})
    assert list(problems) == ["spec.returnValue"]


def test_return_value_wins_over_the_legacy_value() -> None:
    chaos = _load({"action": "return", **METHOD, "value": "1", "returnValue": "2"})
    assert chaos.spec.return_value == "2"


def test_sdk_round_trip() -> None:
    chaos = JVMChaos(
        metadata=ObjectMeta(name="exception", namespace="helloworld"),
        spec=JVMChaosSpec(
            action="exception",
            mode="all",
            selector=PodSelectorSpec(namespaces=["helloworld"]),
            class_="Main",
            method="sayhello",
            exception='java.io.IOException("BOOM")',
            name="boom",
            duration="1m",
        ),
    )
    assert validate_object(chaos) == []
    data = chaos.to_dict()
    assert data["spec"]["class"] == "Main" and data["spec"]["port"] == 9277
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert isinstance(again, JVMChaos)
    assert again.to_dict() == data


def test_sdk_accepts_the_wire_name_for_class() -> None:
    spec = JVMChaosSpec.model_validate({"action": "gc", "mode": "one", "selector": {}, "class": "Main"})
    assert spec.class_ == "Main"
