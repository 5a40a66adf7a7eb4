# Generated from agent.proto by `python -m faultmesh.agent.rpc.generate`; do not edit.
# ruff: noqa
# mypy: disable-error-code="type-arg"
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    INJECTING: _ClassVar[Phase]
    INJECTED: _ClassVar[Phase]
    RECOVERING: _ClassVar[Phase]
    RECOVERED: _ClassVar[Phase]
    FAILED: _ClassVar[Phase]
    DONE: _ClassVar[Phase]
PHASE_UNSPECIFIED: Phase
INJECTING: Phase
INJECTED: Phase
RECOVERING: Phase
RECOVERED: Phase
FAILED: Phase
DONE: Phase

class Target(_message.Message):
    __slots__ = ("container_id", "record_id", "facts_json")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    FACTS_JSON_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    record_id: str
    facts_json: str
    def __init__(self, container_id: _Optional[str] = ..., record_id: _Optional[str] = ..., facts_json: _Optional[str] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("injection_id", "owner", "kind", "spec_json", "target", "lease_ttl_seconds", "slot")
    INJECTION_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    injection_id: str
    owner: str
    kind: str
    spec_json: str
    target: Target
    lease_ttl_seconds: float
    slot: str
    def __init__(self, injection_id: _Optional[str] = ..., owner: _Optional[str] = ..., kind: _Optional[str] = ..., spec_json: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., lease_ttl_seconds: _Optional[float] = ..., slot: _Optional[str] = ...) -> None: ...

class RecoverRequest(_message.Message):
    __slots__ = ("injection_id", "reason")
    INJECTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    injection_id: str
    reason: str
    def __init__(self, injection_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("owner",)
    OWNER_FIELD_NUMBER: _ClassVar[int]
    owner: str
    def __init__(self, owner: _Optional[str] = ...) -> None: ...

class InjectionStatus(_message.Message):
    __slots__ = ("injection_id", "owner", "kind", "target", "slot", "phase", "verified", "errors", "lease_expires_at", "reason")
    INJECTION_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    injection_id: str
    owner: str
    kind: str
    target: Target
    slot: str
    phase: Phase
    verified: bool
    errors: _containers.RepeatedScalarFieldContainer[str]
    lease_expires_at: float
    reason: str
    def __init__(self, injection_id: _Optional[str] = ..., owner: _Optional[str] = ..., kind: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., slot: _Optional[str] = ..., phase: _Optional[_Union[Phase, str]] = ..., verified: _Optional[bool] = ..., errors: _Optional[_Iterable[str]] = ..., lease_expires_at: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("injections",)
    INJECTIONS_FIELD_NUMBER: _ClassVar[int]
    injections: _containers.RepeatedCompositeFieldContainer[InjectionStatus]
    def __init__(self, injections: _Optional[_Iterable[_Union[InjectionStatus, _Mapping]]] = ...) -> None: ...

class RenewLeaseRequest(_message.Message):
    __slots__ = ("owner", "injection_ids", "all", "ttl_seconds")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INJECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    owner: str
    injection_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    ttl_seconds: float
    def __init__(self, owner: _Optional[str] = ..., injection_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

class RenewLeaseResponse(_message.Message):
    __slots__ = ("renewed", "lease_expires_at", "missing")
    RENEWED_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    renewed: _containers.RepeatedScalarFieldContainer[str]
    lease_expires_at: float
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, renewed: _Optional[_Iterable[str]] = ..., lease_expires_at: _Optional[float] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class HaltRequest(_message.Message):
    __slots__ = ("release",)
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    release: bool
    def __init__(self, release: _Optional[bool] = ...) -> None: ...

class HaltResponse(_message.Message):
    __slots__ = ("halted", "recovered")
    HALTED_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    halted: bool
    recovered: _containers.RepeatedCompositeFieldContainer[InjectionStatus]
    def __init__(self, halted: _Optional[bool] = ..., recovered: _Optional[_Iterable[_Union[InjectionStatus, _Mapping]]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("serving", "halted", "active_injections", "journal_bytes", "journal_records", "version")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INJECTIONS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    halted: bool
    active_injections: int
    journal_bytes: int
    journal_records: int
    version: str
    def __init__(self, serving: _Optional[bool] = ..., halted: _Optional[bool] = ..., active_injections: _Optional[int] = ..., journal_bytes: _Optional[int] = ..., journal_records: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...
