"""The committed gRPC modules describe agent.proto as it is now."""

from __future__ import annotations

from faultmesh.agent.rpc import agent_pb2
from faultmesh.agent.rpc.generate import committed_descriptor, main, proto_descriptor


def test_committed_stubs_match_the_proto() -> None:
    assert proto_descriptor() == committed_descriptor(), "run: python -m faultmesh.agent.rpc.generate"
    assert main(["--check"]) == 0


def test_service_has_the_promised_methods() -> None:
    service = agent_pb2.DESCRIPTOR.services_by_name["Agent"]
    assert [method.name for method in service.methods] == ["Apply", "Recover", "List", "RenewLease", "Halt", "Health"]
    assert agent_pb2.DESCRIPTOR.package == "faultmesh.agent.v1"
