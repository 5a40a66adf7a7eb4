"""The committed containerd modules: what the generator strips and rewrites, and what the agent calls."""

from __future__ import annotations

import pytest

from faultmesh.agent.runtime.containerd_api.generate import GenerateError, strip_gogo
from faultmesh.agent.runtime.containerd_api.services.containers.v1 import containers_pb2
from faultmesh.agent.runtime.containerd_api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from faultmesh.agent.runtime.containerd_api.types.task import task_pb2

PROTO = """\
syntax = "proto3";
import weak "gogoproto/gogo.proto";
import "google/protobuf/timestamp.proto";
enum Status {
	option (gogoproto.goproto_enum_prefix) = false;
	UNKNOWN = 0 [(gogoproto.enumvalue_customname) = "StatusUnknown"];
}
message M {
	google.protobuf.Timestamp at = 1 [(gogoproto.stdtime) = true, (gogoproto.nullable) = false];
	string kept = 2 [deprecated = true, (gogoproto.customname) = "Kept"];
}
"""


def test_gogo_options_are_stripped_and_others_kept() -> None:
    stripped = strip_gogo(PROTO, "x.proto")
    assert "gogoproto" not in stripped
    assert "google.protobuf.Timestamp at = 1;" in stripped
    assert "string kept = 2 [deprecated = true];" in stripped
    assert "UNKNOWN = 0;" in stripped


def test_a_gogo_option_it_cannot_strip_is_an_error() -> None:
    with pytest.raises(GenerateError, match=r"x\.proto: a gogoproto option is left"):
        strip_gogo("service S { rpc X(A) returns (B) { option (gogoproto.x) = true; } }", "x.proto")


def test_the_calls_keep_containerds_method_paths() -> None:
    tasks = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"]
    assert tasks.full_name == "containerd.services.tasks.v1.Tasks"
    assert {"Get", "Kill", "Wait"} <= {method.name for method in tasks.methods}
    assert containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name == (
        "containerd.services.containers.v1.Containers"
    )
    assert hasattr(tasks_pb2_grpc, "TasksStub")
    assert task_pb2.Status.Name(task_pb2.Status.Value("STOPPED")) == "STOPPED"


def test_no_gogo_descriptor_is_registered() -> None:
    names = [dependency.name for dependency in tasks_pb2.DESCRIPTOR.dependencies]
    assert all("gogo" not in name for name in names)
    assert "faultmesh/agent/runtime/containerd_api/types/mount.proto" in names
