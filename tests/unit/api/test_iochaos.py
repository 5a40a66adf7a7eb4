"""IOChaos and PodIOChaos: defaults, the per-action rules, the SDK round trip, the CRD shape."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.base import format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.iochaos import (
    IO_METHODS,
    AttrOverrideSpec,
    IOChaos,
    IOChaosSpec,
    MistakeSpec,
    Timespec,
)
from faultmesh.api.loader import ManifestError, load_text, validate_object
from faultmesh.api.podiochaos import IOChaosAction, IoFault, PodIOChaos, PodIOChaosSpec


def manifest(**spec: Any) -> str:
    body = {"mode": "one", "selector": {"labelSelectors": {"app": "etcd"}}, "volumePath": "/var/run/etcd"}
    body.update(spec)
    body = {key: value for key, value in body.items() if value is not None}
    return yaml.safe_dump(
        {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "IOChaos", "metadata": {"name": "io"}, "spec": body}
    )


def load_one(text: str) -> IOChaos:
    obj = load_text(text).objects[0]
    assert isinstance(obj, IOChaos)
    return obj


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


# --- defaults -------------------------------------------------------------------------------


def test_percent_defaults_to_100_and_selector_namespace_to_the_objects() -> None:
    chaos = load_one(manifest(action="fault", errno=5))
    assert chaos.spec.percent == 100
    assert chaos.spec.selector.namespaces == ["default"]
    assert chaos.to_dict()["spec"]["percent"] == 100


def test_unset_path_and_methods_mean_every_file_and_every_operation() -> None:
    spec = load_one(manifest(action="fault", errno=5)).spec
    assert spec.target_path() == "/var/run/etcd/**/*"
    assert spec.target_methods() == list(IO_METHODS)
    spec = load_one(manifest(action="fault", errno=5, path="/var/run/etcd/wal", methods=["write"])).spec
    assert spec.target_path() == "/var/run/etcd/wal"
    assert spec.target_methods() == ["write"]


def test_percent_zero_is_kept_not_defaulted() -> None:
    assert load_one(manifest(action="fault", errno=5, percent=0)).spec.percent == 0


# --- valid manifests of every action ----------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"action": "latency", "delay": "10ms"},
        {"action": "latency", "delay": "0"},
        {"action": "fault", "errno": 5, "methods": ["read", "write"], "percent": 50},
        {"action": "fault", "errno": 4095},
        {"action": "attrOverride", "attr": {"perm": 72}},
        {"action": "attrOverride", "attr": {"kind": "directory", "atime": {"sec": 0, "nsec": 999_999_999}}},
        {"action": "mistake", "mistake": {"filling": "random", "maxOccurrences": 1, "maxLength": 10}},
        {"action": "fault", "errno": 5, "path": "/var/run/etcd/**/*"},
        {"action": "fault", "errno": 5, "path": "/var/**/*.wal"},
        {"action": "fault", "errno": 5, "path": "*.wal"},
    ],
)
def test_valid_specs_load(spec: dict[str, Any]) -> None:
    assert load_one(manifest(**spec)).spec.action == spec["action"]


# --- the rules, one by one --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"action": "slow"}, "spec.action", '"slow" is not one of'),
        ({"action": "latency"}, "spec.delay", "is required with action latency"),
        ({"action": "latency", "delay": "10"}, "spec.delay", '"10" is not a duration'),
        ({"action": "latency", "delay": "-5ms"}, "spec.delay", "is negative"),
        ({"action": "fault"}, "spec.errno", "is required with action fault"),
        ({"action": "fault", "errno": 0}, "spec.errno", "may not be 0"),
        ({"action": "fault", "errno": 4096}, "spec.errno", "is not a Linux errno"),
        ({"action": "fault", "errno": -1}, "spec.errno", "greater than or equal to 0"),
        ({"action": "fault", "errno": 5, "percent": -1}, "spec.percent", "greater than or equal to 0"),
        ({"action": "fault", "errno": 5, "percent": 101}, "spec.percent", "less than or equal to 100"),
        ({"action": "fault", "errno": 5, "methods": ["wrte"]}, "spec.methods[0]", 'did you mean "write"'),
        ({"action": "fault", "errno": 5, "methods": ["READ"]}, "spec.methods[0]", 'did you mean "read"'),
        ({"action": "fault", "errno": 5, "methods": ["ioctl"]}, "spec.methods[0]", "(one of lookup,"),
        ({"action": "fault", "errno": 5, "volumePath": ""}, "spec.volumePath", "is required"),
        ({"action": "fault", "errno": 5, "volumePath": None}, "spec.volumePath", "is required"),
        ({"action": "fault", "errno": 5, "volumePath": "data"}, "spec.volumePath", "not an absolute path"),
        ({"action": "fault", "errno": 5, "path": "/data/**"}, "spec.path", "lies outside volumePath"),
        ({"action": "attrOverride"}, "spec.attr", "is required with action attrOverride"),
        ({"action": "attrOverride", "attr": {}}, "spec.attr", "set at least one of"),
        ({"action": "attrOverride", "attr": {"kind": "file"}}, "spec.attr.kind", "is not a file type"),
        (
            {"action": "attrOverride", "attr": {"kind": "Directory"}},
            "spec.attr.kind",
            'did you mean "directory"',
        ),
        (
            {"action": "attrOverride", "attr": {"perm": 0o10000}},
            "spec.attr.perm",
            "beyond the permission bits",
        ),
        ({"action": "attrOverride", "attr": {"size": -1}}, "spec.attr.size", "greater than or equal to 0"),
        ({"action": "attrOverride", "attr": {"uid": 2**31}}, "spec.attr.uid", "less than or equal to"),
        ({"action": "attrOverride", "attr": {"mtime": {"sec": 1}}}, "spec.attr.mtime.nsec", "is required"),
        (
            {"action": "attrOverride", "attr": {"mtime": {"sec": 1, "nsec": 10**9}}},
            "spec.attr.mtime.nsec",
            "less than or equal to 999999999",
        ),
        ({"action": "mistake"}, "spec.mistake", "is required with action mistake"),
        ({"action": "mistake", "mistake": {}}, "spec.mistake.filling", "is required with action mistake"),
        ({"action": "mistake", "mistake": {}}, "spec.mistake.maxOccurrences", "is required"),
        ({"action": "mistake", "mistake": {}}, "spec.mistake.maxLength", "is required"),
        (
            {"action": "mistake", "mistake": {"filling": "ones", "maxOccurrences": 1, "maxLength": 1}},
            "spec.mistake.filling",
            '"ones" is not one of',
        ),
        (
            {"action": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 0, "maxLength": 1}},
            "spec.mistake.maxOccurrences",
            "greater than or equal to 1",
        ),
        ({"action": "fault", "errno": 5, "duration": "1 hour"}, "spec.duration", "is not a duration"),
        ({"action": "fault", "errno": 5, "mode": "fixed", "value": "0"}, "spec.value", "greater than 0"),
    ],
)
def test_rule_refuses_with_field_path(spec: dict[str, Any], path: str, message: str) -> None:
    found = problems(manifest(**spec))
    assert path in found, found
    assert message in found[path]


def test_settings_of_other_actions_are_ignored_as_in_chaos_mesh() -> None:
    # A latency experiment carrying an errno (say, left over from editing) is still valid.
    assert load_one(manifest(action="latency", delay="1ms", errno=0)).spec.errno == 0


def test_a_missing_spec_is_refused_though_the_crd_does_not_require_it() -> None:
    text = "apiVersion: chaos-mesh.org/v1alpha1\nkind: IOChaos\nmetadata: {name: bare}\n"
    assert problems(text) == {"spec": "is required"}
    schema = crd_for(IOChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "spec" not in schema.get("required", [])
    assert schema["properties"]["spec"]["required"] == ["selector", "mode", "action", "volumePath"]


@given(st.lists(st.sampled_from(IO_METHODS), max_size=8))
def test_any_list_of_known_methods_is_accepted(methods: list[str]) -> None:
    load_one(manifest(action="fault", errno=5, methods=methods))


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
        lambda m: m not in IO_METHODS
    )
)
def test_any_other_method_is_refused_at_its_index(method: str) -> None:
    found = problems(manifest(action="fault", errno=5, methods=["read", method]))
    assert list(found) == ["spec.methods[1]"]
    assert found["spec.methods[1]"].startswith(f'"{method}" is not a file operation')


# --- SDK --------------------------------------------------------------------------------------


def test_sdk_round_trip() -> None:
    chaos = IOChaos(
        metadata={"name": "etcd-slow", "namespace": "db"},
        spec=IOChaosSpec(
            action="attrOverride",
            mode="all",
            selector=PodSelectorSpec(label_selectors={"app": "etcd"}),
            volume_path="/var/run/etcd",
            attr=AttrOverrideSpec(perm=0o444, mtime=Timespec(sec=0, nsec=0), kind="regularFile"),
            mistake=MistakeSpec(filling="zero"),
            methods=["getattr"],
            duration="5m",
        ),
    )
    assert validate_object(chaos) == []
    assert chaos.spec.selector.namespaces == ["db"]
    data = chaos.to_dict()
    assert data["kind"] == "IOChaos"
    assert data["spec"]["volumePath"] == "/var/run/etcd"
    assert data["spec"]["attr"] == {"mtime": {"sec": 0, "nsec": 0}, "kind": "regularFile", "perm": 0o444}
    again = load_one(yaml.safe_dump(data))
    assert again.to_dict() == data


def test_sdk_object_reports_rule_issues_with_paths() -> None:
    chaos = IOChaos(
        metadata={"name": "bad"},
        spec=IOChaosSpec(
            action="fault", mode="one", selector=PodSelectorSpec(), volume_path="/data", methods=["nope"]
        ),
    )
    issues = {issue.where(): issue.message for issue in validate_object(chaos, namespace="default")}
    assert set(issues) == {"spec.errno", "spec.methods[0]"}


# --- PodIOChaos -------------------------------------------------------------------------------

POD_IO_CHAOS = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: PodIOChaos
metadata:
  name: etcd-0
  namespace: db
spec:
  volumeMountPath: /var/run/etcd
  container: etcd
  actions:
  - type: latency
    path: /var/run/etcd/**/*
    percent: 50
    latency: 10ms
    source: db/io-delay
  - type: fault
    path: /var/run/etcd/wal/*
    methods: [write, fsync]
    percent: 100
    faults:
    - {errno: 5, weight: 1}
    - {errno: 28, weight: 3}
    source: db/io-errno
  - type: attrOverride
    path: /var/run/etcd/member
    percent: 100
    perm: 292
    kind: directory
    source: db/io-attr
  - type: mistake
    path: /var/run/etcd/**/*
    percent: 10
    mistake: {filling: random, maxOccurrences: 2, maxLength: 4096}
    source: db/io-mistake
status:
  pid: 4242
  startTime: 1700000000
  observedGeneration: 3
"""


def test_pod_io_chaos_loads_and_round_trips() -> None:
    obj = load_text(POD_IO_CHAOS).objects[0]
    assert isinstance(obj, PodIOChaos)
    actions = obj.spec.actions or []
    assert [action.type for action in actions] == ["latency", "fault", "attrOverride", "mistake"]
    assert actions[1].faults == [IoFault(errno=5, weight=1), IoFault(errno=28, weight=3)]
    assert actions[2].perm == 292
    assert obj.status is not None and obj.status.pid == 4242
    data = obj.to_dict()
    assert load_text(yaml.safe_dump(data)).objects[0].to_dict() == data


def test_pod_io_chaos_built_in_code() -> None:
    obj = PodIOChaos(
        metadata={"name": "etcd-0", "namespace": "db"},
        spec=PodIOChaosSpec(
            volume_mount_path="/data",
            actions=[
                IOChaosAction(type="fault", path="/data/*", percent=100, faults=[IoFault(errno=5, weight=1)])
            ],
        ),
    )
    assert validate_object(obj) == []
    assert obj.to_dict()["spec"]["actions"][0] == {
        "path": "/data/*",
        "percent": 100,
        "type": "fault",
        "faults": [{"errno": 5, "weight": 1}],
    }


@pytest.mark.parametrize(
    ("action", "path", "message"),
    [
        ({"type": "slow"}, "spec.actions[0].type", '"slow" is not an IO chaos type'),
        ({"type": "latency"}, "spec.actions[0].latency", "is required with type latency"),
        ({"type": "latency", "latency": "fast"}, "spec.actions[0].latency", "is not a duration"),
        ({"type": "fault"}, "spec.actions[0].faults", "is required with type fault"),
        (
            {"type": "fault", "faults": [{"errno": 0, "weight": 1}]},
            "spec.actions[0].faults[0].errno",
            "not be 0",
        ),
        ({"type": "fault", "faults": [{"errno": 5}]}, "spec.actions[0].faults[0].weight", "is required"),
        ({"type": "attrOverride"}, "spec.actions[0].type", "needs at least one attribute"),
        ({"type": "attrOverride", "kind": "pipe"}, "spec.actions[0].kind", "is not a file type"),
        ({"type": "mistake"}, "spec.actions[0].mistake", "is required with type mistake"),
        (
            {"type": "fault", "faults": [{"errno": 5, "weight": 1}], "methods": ["red"]},
            "spec.actions[0].methods[0]",
            'did you mean "read"',
        ),
        (
            {"type": "fault", "faults": [{"errno": 5, "weight": 1}], "percent": 200},
            "spec.actions[0].percent",
            "less than or equal to 100",
        ),
        (
            {"type": "fault", "faults": [{"errno": 5, "weight": 1}], "path": None},
            "spec.actions[0].path",
            "is required",
        ),
    ],
)
def test_pod_io_chaos_rules(action: dict[str, Any], path: str, message: str) -> None:
    entry = {"path": "/data/*", "percent": 100, **action}
    entry = {key: value for key, value in entry.items() if value is not None}
    text = yaml.safe_dump(
        {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "PodIOChaos",
            "metadata": {"name": "p"},
            "spec": {"volumeMountPath": "/data", "actions": [entry]},
        }
    )
    found = problems(text)
    assert path in found, found
    assert message in found[path]


def test_pod_io_chaos_crd_has_a_status_subresource_and_optional_spec() -> None:
    version = crd_for(PodIOChaos)["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert "spec" not in version["schema"]["openAPIV3Schema"].get("required", [])
