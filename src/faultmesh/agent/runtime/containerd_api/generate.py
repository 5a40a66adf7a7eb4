"""Regenerate the containerd gRPC modules: ``python -m faultmesh.agent.runtime.containerd_api.generate``.

The protos come from Debian's ``golang-github-containerd-containerd-dev`` (installed, its files are
under ``/usr/share/gocode/src``; or unpacked anywhere and named with ``--proto-path``). The generated
modules are committed, so a fresh clone and the agent's image need neither protoc nor that package.

Two rewrites happen on a staged copy before ``grpc_tools.protoc`` runs:

- Go import paths (``github.com/containerd/containerd/api/...``) become this package's path, so the
  modules import one another as ``faultmesh.agent.runtime.containerd_api...``. Proto package names,
  hence gRPC method paths (``/containerd.services.tasks.v1.Tasks/Get``), stay as they are.
- gogoproto options are dropped: they steer Go code generation only, never the wire format, and
  leaving them out keeps gogo's extensions of ``google.protobuf.FieldOptions`` out of our process.

``--check`` exits 1 when the committed modules no longer describe the protos (compared as
descriptors, so a newer grpcio-tools alone is no drift).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GO_IMPORT = "github.com/containerd/containerd/api/"
PACKAGE_DIR = Path(__file__).parent
#: Where the staged protos live relative to ``src``: the generated modules' import path.
PY_PATH = "faultmesh/agent/runtime/containerd_api/"
SRC = PACKAGE_DIR.parents[3]
DEBIAN_GOCODE = Path("/usr/share/gocode/src")
PATH_VARIABLE = "FAULTMESH_CONTAINERD_PROTO_PATH"
#: What the agent calls (Containers, Tasks, Version) and everything they import.
PROTOS = (
    "services/containers/v1/containers.proto",
    "services/tasks/v1/tasks.proto",
    "services/version/v1/version.proto",
    "types/descriptor.proto",
    "types/metrics.proto",
    "types/mount.proto",
    "types/task/task.proto",
)
HEADER = (
    "# Generated from containerd's API protos by `python -m faultmesh.agent.runtime.containerd_api.generate`;"
    " do not edit.\n# ruff: noqa\n"
)
#: Untyped (gRPC) or loosely typed (the .pyi's bare Mapping) generated code: mypy reads, never judges it.
GRPC_HEADER = HEADER + "# mypy: ignore-errors\n"

_GOGO_IMPORT = re.compile(r'^\s*import\s+(?:weak\s+)?"gogoproto/gogo\.proto";\s*\n', re.MULTILINE)
_GOGO_OPTION_LINE = re.compile(r"^\s*option\s+\(gogoproto\.[a-z_]+\)\s*=\s*[^;]*;\s*\n", re.MULTILINE)
_OPTION_LIST = re.compile(r"\s*\[([^\[\]]*)\]")
_SERVICE = re.compile(r"^service\s", re.MULTILINE)


class GenerateError(RuntimeError):
    """The protos could not be found or compiled."""


def find_api_root(search: Sequence[Path] = ()) -> Path:
    """The directory holding containerd's ``services/`` and ``types/`` protos.

    Looks in ``search`` (gocode roots or the api directory itself), then ``$FAULTMESH_CONTAINERD_PROTO_PATH``
    (colon-separated), then Debian's install location.
    """
    roots = [*search]
    roots += [Path(p) for p in os.environ.get(PATH_VARIABLE, "").split(":") if p]
    roots.append(DEBIAN_GOCODE)
    for root in roots:
        for candidate in (root, root / GO_IMPORT.rstrip("/")):
            if (candidate / PROTOS[0]).is_file():
                return candidate
    looked = ", ".join(str(r) for r in roots)
    raise GenerateError(
        f"containerd's protos are not in {looked}: install golang-github-containerd-containerd-dev, "
        f"or unpack it and pass --proto-path (or set {PATH_VARIABLE})"
    )


def strip_gogo(text: str, name: str) -> str:
    """The proto without gogoproto's import and options; refuses what it cannot strip cleanly."""
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_OPTION_LINE.sub("", text)

    def drop_gogo(match: re.Match[str]) -> str:
        options = [o.strip() for o in match.group(1).split(",") if o.strip()]
        kept = [o for o in options if not o.startswith("(gogoproto.")]
        return f" [{', '.join(kept)}]" if kept else ""

    text = _OPTION_LIST.sub(drop_gogo, text)
    if "gogoproto" in text:
        raise GenerateError(f"{name}: a gogoproto option is left after stripping; extend strip_gogo")
    return text


def stage(api_root: Path, into: Path) -> list[str]:
    """Copy the protos under ``into`` at their Python import path, rewritten; returns their names."""
    names = []
    for relative in PROTOS:
        text = (api_root / relative).read_text().replace(f'"{GO_IMPORT}', f'"{PY_PATH}')
        target = into / PY_PATH / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(strip_gogo(text, relative))
        names.append(PY_PATH + relative)
    return names


def _protoc(staged: Path, names: Sequence[str], *options: str) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    bundled = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    argv = ["protoc", f"-I{staged}", f"-I{bundled}", *options, *names]
    if protoc.main(argv) != 0:
        raise GenerateError(f"grpc_tools.protoc failed on {', '.join(names)}")


def generate(api_root: Path, out: Path) -> list[Path]:
    """Compile the protos into ``out`` (laid out like ``src``), with package ``__init__.py`` files."""
    with tempfile.TemporaryDirectory(prefix="containerd-protos-") as scratch:
        names = stage(api_root, Path(scratch))
        _protoc(Path(scratch), names, f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}")
        with_services = {n for n in names if _SERVICE.search((Path(scratch) / n).read_text())}
    written = []
    for name in names:
        stem = out / name.removesuffix(".proto")
        for suffix, header in (("_pb2.py", HEADER), ("_pb2.pyi", GRPC_HEADER), ("_pb2_grpc.py", GRPC_HEADER)):
            path = stem.with_name(stem.name + suffix)
            if suffix == "_pb2_grpc.py" and name not in with_services:
                path.unlink()  # protoc writes one even for a proto without services
                continue
            path.write_text(header + path.read_text())
            written.append(path)
        directory = stem.parent
        while directory != out / PY_PATH.rstrip("/"):
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("")
                written.append(init)
            directory = directory.parent
    return written


def _canonical(descriptor: Any) -> bytes:
    # The Python generator drops json_name from the descriptor it embeds; protoc's set keeps it.
    messages = list(descriptor.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return bytes(descriptor.SerializeToString(deterministic=True))


def source_descriptors(api_root: Path) -> dict[str, bytes]:
    """Each proto compiled now, by file name."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory(prefix="containerd-protos-") as scratch:
        names = stage(api_root, Path(scratch))
        out = Path(scratch) / "set.desc"
        _protoc(Path(scratch), names, f"--descriptor_set_out={out}")
        found = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {file.name: _canonical(file) for file in found.file}


def committed_descriptors() -> dict[str, bytes]:
    """What the committed modules were generated from, by file name."""
    import importlib

    from google.protobuf import descriptor_pb2

    found = {}
    for relative in PROTOS:
        module_name = (PY_PATH + relative.removesuffix(".proto")).replace("/", ".") + "_pb2"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        descriptor = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        found[descriptor.name] = _canonical(descriptor)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faultmesh.agent.runtime.containerd_api.generate",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--proto-path", type=Path, action="append", default=[],
                        help="a gocode root or containerd's api directory (repeatable)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed modules are stale")
    args = parser.parse_args(argv)
    try:
        api_root = find_api_root(args.proto_path)
        if args.check:
            if source_descriptors(api_root) != committed_descriptors():
                print("the containerd modules are out of date: run "
                      "python -m faultmesh.agent.runtime.containerd_api.generate")
                return 1
            return 0
        for path in generate(api_root, SRC):
            print(f"wrote {path.relative_to(SRC)}")
    except GenerateError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
