"""IOChaos: slow, failing, lying or corrupting file operations under a volume of a pod.

The user writes an IOChaos; the controller turns it into one PodIOChaos per pod (see
``podiochaos.py``), whose actions the agent's FUSE injector serves. The pieces both share --
the attribute override, the mistake spec, the list of file operations -- live here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import ConfigDict, Field

from .base import CrdInfo, Issue, Model, Path, RuleContext, not_one_of, quote
from .common import ChaosResource, ChaosStatus, ContainerSelector, spec_optional_in_crd
from .registry import register
from .types import Duration, Int32, Int64, Percent, parse_go_duration

IOChaosType = Literal["latency", "fault", "attrOverride", "mistake"]
IO_CHAOS_TYPES: tuple[str, ...] = get_args(IOChaosType)

#: The file operations an IO fault can be limited to (FUSE request names, as Chaos Mesh's toda).
IO_METHODS: tuple[str, ...] = (
    "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
    "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir",
    "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr",
    "removexattr", "access", "create", "getlk", "setlk", "bmap",
)

#: The file types an attribute override may report.
FILE_TYPES: tuple[str, ...] = (
    "namedPipe", "charDevice", "blockDevice", "directory", "regularFile", "symlink", "socket",
)

#: Linux errno values are small positive numbers; the kernel reserves 1..4095 for them.
MAX_ERRNO = 4095
#: The permission bits (with setuid, setgid and sticky) a file mode can carry.
MAX_PERM = 0o7777

# Go's unsigned fields: no negatives; the CRD's int32 format caps the 32-bit ones at 2^31 - 1.
UInt64 = Annotated[Int64, Field(ge=0)]
UInt32 = Annotated[Int32, Field(ge=0, le=2**31 - 1)]
UInt16 = Annotated[int, Field(ge=0, le=2**16 - 1)]


def method_issues(methods: list[str] | None) -> Iterator[Issue]:
    """Each method must name a file operation the injector knows."""
    for index, method in enumerate(methods or []):
        if method not in IO_METHODS:
            yield Issue(("methods", index), not_one_of(method, "a file operation", IO_METHODS))


def latency_issues(latency: str | None, path: Path, when: str) -> Iterator[Issue]:
    """A latency action needs a delay, and a delay cannot be negative. ``when``: "action latency"."""
    if not latency:
        yield Issue(path, f'is required with {when} (a duration such as "100ms")')
    elif parse_go_duration(latency) < 0:
        yield Issue(path, f"{quote(latency)} is negative; a delay must be ≥ 0")


def errno_issues(errno: int | None, path: Path, when: str) -> Iterator[Issue]:
    """A fault must return a real errno: 0 would be success, above 4095 no errno at all."""
    if not errno:
        yield Issue(path, f"is required with {when} and may not be 0 (e.g. 5 for EIO)")
    elif errno > MAX_ERRNO:
        yield Issue(path, f"{errno} is not a Linux errno; use 1..{MAX_ERRNO} (e.g. 5 for EIO)")


class Timespec(Model):
    """A point in time as stat(2) reports it: seconds and nanoseconds since the epoch."""

    sec: Int64
    nsec: Int64 = Field(ge=0, le=999_999_999)


class AttrOverrideSpec(Model):
    """File attributes to report instead of the real ones; unset ones stay as they are."""

    ino: UInt64 | None = None
    size: UInt64 | None = None
    blocks: UInt64 | None = None
    atime: Timespec | None = None
    mtime: Timespec | None = None
    ctime: Timespec | None = None
    kind: str | None = Field(default=None, description="The file type to report, e.g. regularFile.")
    perm: UInt16 | None = Field(default=None, description="Permission bits, e.g. 420 (0o644).")
    nlink: UInt32 | None = None
    uid: UInt32 | None = None
    gid: UInt32 | None = None
    rdev: UInt32 | None = None

    #: The attribute fields, as they are named on the wire.
    ATTRIBUTES: ClassVar[tuple[str, ...]] = (
        "ino", "size", "blocks", "atime", "mtime", "ctime", "kind", "perm", "nlink", "uid", "gid", "rdev",
    )

    def overrides_anything(self) -> bool:
        return any(getattr(self, name) is not None for name in self.ATTRIBUTES)

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.kind is not None and self.kind not in FILE_TYPES:
            yield Issue(
                ("kind",),
                not_one_of(self.kind, "a file type", FILE_TYPES),
            )
        if self.perm is not None and self.perm > MAX_PERM:
            yield Issue(
                ("perm",),
                f"{self.perm} has bits beyond the permission bits; use 0..{MAX_PERM} ({oct(MAX_PERM)})",
            )
        yield from super().rules(ctx)


class MistakeSpec(Model):
    """How to corrupt data read or written: what to fill in, how often, how much."""

    filling: Literal["zero", "random"] | None = Field(
        default=None, description="What the wrong bytes are: zeros or random octets."
    )
    max_occurrences: Int64 | None = Field(
        default=None, ge=1, description="Each operation gets between 1 and this many wrong segments."
    )
    max_length: Int64 | None = Field(
        default=None, ge=1, description="The longest wrong segment, in bytes."
    )


def mistake_issues(mistake: MistakeSpec | None, path: Path, when: str) -> Iterator[Issue]:
    """A mistake action needs all three of its settings: the injector has no defaults for them."""
    if mistake is None:
        yield Issue(path, f"is required with {when} (filling, maxOccurrences, maxLength)")
        return
    settings = {"filling": mistake.filling, "maxOccurrences": mistake.max_occurrences,
                "maxLength": mistake.max_length}
    for name, value in settings.items():
        if value is None:
            yield Issue((*path, name), f"is required with {when}")


def _literal_parts(path: str) -> list[str]:
    """The components of an absolute glob before its first wildcard."""
    parts = [part for part in path.split("/") if part]
    literal: list[str] = []
    for part in parts:
        if any(char in part for char in "*?["):
            break
        literal.append(part)
    return literal


class IOChaosSpec(ContainerSelector):
    """Which file operations under which volume to disturb, and how."""

    action: IOChaosType = Field(description="latency / fault / attrOverride / mistake")
    delay: Duration | None = Field(
        default=None, description='The latency to add to each operation (action latency), e.g. "100ms".'
    )
    errno: UInt32 | None = Field(
        default=None, description="The error to return (action fault), e.g. 5 for EIO."
    )
    attr: AttrOverrideSpec | None = Field(
        default=None, description="The attributes to report (action attrOverride)."
    )
    mistake: MistakeSpec | None = Field(
        default=None, description="How to corrupt the data (action mistake)."
    )
    path: str | None = Field(
        default=None, description="A glob of the files to affect; unset, every file under volumePath."
    )
    methods: list[str] | None = Field(
        default=None, description="The file operations to affect; unset, all of them."
    )
    percent: Percent = Field(default=100, description="The chance, in percent, that an operation is hit.")
    volume_path: str = Field(description="The mount path, in the container, of the volume to inject into.")
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        yield from self._volume_issues()
        yield from method_issues(self.methods)
        if self.action == "latency":
            yield from latency_issues(self.delay, ("delay",), "action latency")
        elif self.action == "fault":
            yield from errno_issues(self.errno, ("errno",), "action fault")
        elif self.action == "attrOverride":
            if self.attr is None or not self.attr.overrides_anything():
                yield Issue(
                    ("attr",),
                    f"is required with action attrOverride; set at least one of"
                    f" {', '.join(AttrOverrideSpec.ATTRIBUTES)}",
                )
        elif self.action == "mistake":
            yield from mistake_issues(self.mistake, ("mistake",), "action mistake")

    def _volume_issues(self) -> Iterator[Issue]:
        if not self.volume_path:
            yield Issue(("volumePath",), "is required (the mount path of the volume in the container)")
            return
        if not self.volume_path.startswith("/"):
            yield Issue(("volumePath",), f"{quote(self.volume_path)} is not an absolute path")
            return
        if self.path and self.path.startswith("/"):
            # Only files under the volume pass through the injector; a glob rooted elsewhere hits nothing.
            volume = _literal_parts(posixpath.normpath(self.volume_path))
            literal = _literal_parts(self.path)
            shared = min(len(volume), len(literal))
            if volume[:shared] != literal[:shared]:
                yield Issue(
                    ("path",),
                    f"{quote(self.path)} lies outside volumePath {quote(self.volume_path)},"
                    " so it would match no file",
                )

    def target_path(self) -> str:
        """The glob of affected files: ``path`` if given, else everything under the volume."""
        return self.path or posixpath.join(self.volume_path, "**", "*")

    def target_methods(self) -> list[str]:
        """The affected file operations: ``methods`` if given, else all of them."""
        return list(self.methods) if self.methods else list(IO_METHODS)


class IOChaosStatus(ChaosStatus):
    """The shared chaos status, plus the generation of each pod's PodIOChaos."""

    instances: dict[str, Int64] | None = Field(
        default=None, description="The PodIOChaos generation per pod (namespace/name)."
    )


@register
class IOChaos(ChaosResource):
    """IOChaos delays file operations, makes them fail, lies about attributes or corrupts data."""

    model_config = ConfigDict(json_schema_extra=spec_optional_in_crd)

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="iochaos",
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(
            ("action", ".spec.action", "string", "The IO fault injected"),
            ("duration", ".spec.duration", "string", "How long the chaos lasts"),
        ),
    )

    spec: IOChaosSpec
    status: IOChaosStatus | None = None
