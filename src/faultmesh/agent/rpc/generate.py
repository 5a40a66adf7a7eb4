"""Regenerate the Python modules of ``agent.proto``: ``python -m faultmesh.agent.rpc.generate``.

The generated modules are committed, so a fresh clone (and the agent's image) needs no protoc at
install time. ``--check`` exits 1 when the committed modules no longer describe ``agent.proto``
(compared as descriptors, so a newer grpcio-tools alone does not count as drift);
``tests/unit/agent/test_rpc_stubs.py`` runs the same check.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

PROTO = Path(__file__).with_name("agent.proto")
#: The directory the proto's import path is relative to (``src``), so the generated modules
#: import one another as ``faultmesh.agent.rpc.agent_pb2``.
ROOT = PROTO.parents[3]
RELATIVE = PROTO.relative_to(ROOT)
OUTPUTS = ("agent_pb2.py", "agent_pb2.pyi", "agent_pb2_grpc.py")
HEADER = "# Generated from agent.proto by `python -m faultmesh.agent.rpc.generate`; do not edit.\n# ruff: noqa\n"
#: The gRPC module is untyped generated code; the typed API is client.py and server.py.
GRPC_HEADER = HEADER + "# mypy: ignore-errors\n"
#: protoc writes ``Mapping`` without type arguments in the message stubs.
PYI_HEADER = HEADER + '# mypy: disable-error-code="type-arg"\n'


def _protoc(*options: str) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    bundled = Path(protoc.__file__).parent / "_proto"
    argv = ["protoc", f"-I{ROOT}", f"-I{bundled}", *options, str(RELATIVE)]
    if protoc.main(argv) != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {RELATIVE}")


def generate(out: Path) -> list[Path]:
    """Compile the proto into ``out`` (laid out like ``src``); return the generated files."""
    _protoc(f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}")
    files = [out / RELATIVE.parent / name for name in OUTPUTS]
    for path in files:
        header = {".pyi": PYI_HEADER}.get(path.suffix, GRPC_HEADER if path.name.endswith("_grpc.py") else HEADER)
        path.write_text(header + path.read_text())
    return files


def proto_descriptor() -> bytes:
    """``agent.proto`` compiled now, as a serialized FileDescriptorProto."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory(prefix="faultmesh-proto-") as scratch:
        out = Path(scratch) / "agent.desc"
        _protoc(f"--descriptor_set_out={out}")
        descriptors = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return _canonical(descriptors.file[0])


def committed_descriptor() -> bytes:
    """What the committed ``agent_pb2`` module was generated from, serialized the same way."""
    from google.protobuf import descriptor_pb2

    from faultmesh.agent.rpc import agent_pb2

    return _canonical(descriptor_pb2.FileDescriptorProto.FromString(agent_pb2.DESCRIPTOR.serialized_pb))


def _canonical(descriptor: Any) -> bytes:
    # The Python generator drops json_name from the descriptor it embeds; protoc's set keeps it.
    messages = list(descriptor.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return bytes(descriptor.SerializeToString(deterministic=True))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        if proto_descriptor() != committed_descriptor():
            print("agent_pb2*.py are out of date with agent.proto: run python -m faultmesh.agent.rpc.generate")
            return 1
        return 0
    with tempfile.TemporaryDirectory(prefix="faultmesh-proto-") as scratch:
        for generated in generate(Path(scratch)):
            committed = PROTO.with_name(generated.name)
            committed.write_text(generated.read_text())
            print(f"wrote {committed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
