"""Checks on what a caller sends, before the agent touches anything.

Every refusal names the request field it concerns (``spec_json.delay.latency: "10x" is not a
duration``), in the words ``faultmesh validate`` would use: the spec is checked by the kind's
API model, with Chaos Mesh's webhook rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from faultmesh.agent.runtime.base import ContainerRef, InvalidContainerIdError
from faultmesh.api.base import GROUP_VERSION, format_path, not_one_of, quote
from faultmesh.api.loader import ManifestError, parse_object
from faultmesh.api.registry import kinds

#: A lease longer than a day is almost surely a unit mistake, and would let a fault outlive an
#: owner that died by far longer than anyone expects.
MAX_LEASE_SECONDS = 24 * 3600.0
MAX_ID_LENGTH = 512
#: The namespace the spec is checked in: the agent acts on one target that was already selected,
#: so the selector's namespace default has no effect here.
CHECK_NAMESPACE = "default"


class InvalidRequestError(ValueError):
    """A request refused before anything ran; ``problems`` are ``field: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _identifier(field: str, value: str, problems: list[str]) -> None:
    if not value:
        problems.append(f"{field}: is required")
    elif len(value) > MAX_ID_LENGTH:
        problems.append(f"{field}: is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    elif any(not character.isprintable() or character.isspace() for character in value):
        problems.append(f"{field}: {quote(value)} holds whitespace or control characters")


def require_identifier(field: str, value: str) -> None:
    problems: list[str] = []
    _identifier(field, value, problems)
    if problems:
        raise InvalidRequestError(problems)


def check_ttl(field: str, seconds: float) -> None:
    """A lease length: positive, finite, at most a day."""
    if math.isnan(seconds) or seconds <= 0:
        raise InvalidRequestError([f"{field}: {seconds!r} must be greater than 0 seconds"])
    if seconds > MAX_LEASE_SECONDS:
        raise InvalidRequestError([f"{field}: {seconds!r} is longer than {MAX_LEASE_SECONDS:.0f} seconds (a day)"])


def parse_json_object(field: str, text: str, *, required: bool) -> dict[str, Any]:
    """A JSON object from a request field; empty text is ``{}`` unless ``required``."""
    if not text.strip():
        if required:
            raise InvalidRequestError([f"{field}: is required (a JSON object)"])
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise InvalidRequestError([f"{field}: is not JSON: {error.msg} at {where}"]) from None
    if not isinstance(value, dict):
        raise InvalidRequestError([f"{field}: must be a JSON object, not {type(value).__name__}"])
    return value


def spec_kinds() -> dict[str, Any]:
    """Kinds whose objects carry a spec an agent could act on (experiments; not Schedule or Workflow)."""
    return {
        name: cls
        for name, cls in kinds().items()
        if "spec" in cls.model_fields and getattr(cls, "immutable_spec", False)
    }


def check_spec(kind: str, spec: dict[str, Any], field: str = "spec_json") -> dict[str, Any]:
    """Validate and default ``spec`` with ``kind``'s model; return it in wire form (camelCase).

    The spec is checked inside an object of its kind, so the rules that Chaos Mesh's webhook
    applies across fields run too; problems are reported under ``field``.
    """
    table = spec_kinds()
    if kind not in table:
        refusal = not_one_of(kind, "a chaos kind", sorted(table)) if kind else "is required"
        raise InvalidRequestError([f"kind: {refusal}"])
    envelope = {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": "agent-request", "namespace": CHECK_NAMESPACE},
        "spec": spec,
    }
    try:
        obj = parse_object(envelope, CHECK_NAMESPACE)
    except ManifestError as error:
        problems = []
        for problem in error.problems:
            path = problem.path
            where = format_path((field, *path[1:])) if path[:1] == ("spec",) else field
            problems.append(f"{where}: {problem.message}")
        raise InvalidRequestError(problems) from None
    wire = obj.to_dict().get("spec", {})
    assert isinstance(wire, dict)
    return wire


@dataclass(frozen=True)
class ApplyArguments:
    """An Apply request after every check: what the engine is given."""

    injection_id: str
    owner: str
    kind: str
    spec: dict[str, Any]
    container_id: str
    record_id: str
    facts: dict[str, Any]
    lease_ttl_seconds: float
    slot: str


def check_kind_and_spec(
    kind: str, spec: dict[str, Any], planner_kinds: Collection[str], field: str = "spec_json"
) -> dict[str, Any]:
    """The spec of ``kind``, checked as far as the agent can before planning.

    A Chaos Mesh kind (``StressChaos``) is checked by its API model. A kind only the agent knows
    (``NetworkPartition``: a fault the controller resolved, peers already addresses) is checked by
    its planner, which the service runs before anything is journalled.
    """
    if not kind:
        raise InvalidRequestError(["kind: is required"])
    api_kinds = spec_kinds()
    if kind in api_kinds:
        return check_spec(kind, spec, field)
    if kind in planner_kinds:
        return spec
    known = sorted(set(api_kinds) | set(planner_kinds))
    raise InvalidRequestError([f"kind: {not_one_of(kind, 'a kind this agent knows', known)}"])


def check_apply(
    *,
    injection_id: str,
    owner: str,
    kind: str,
    spec_json: str,
    container_id: str,
    record_id: str,
    facts_json: str,
    lease_ttl_seconds: float,
    slot: str,
    planner_kinds: Collection[str] = (),
) -> ApplyArguments:
    """Every check of an Apply request; all field problems at once, the spec's last."""
    problems: list[str] = []
    _identifier("injection_id", injection_id, problems)
    _identifier("owner", owner, problems)
    if not container_id:
        problems.append("target.container_id: is required")
    else:
        try:
            ContainerRef.parse(container_id)
        except InvalidContainerIdError as error:
            problems.append(f"target.container_id: {error}")
    for check in (
        lambda: check_ttl("lease_ttl_seconds", lease_ttl_seconds),
        lambda: parse_json_object("target.facts_json", facts_json, required=False),
    ):
        try:
            check()
        except InvalidRequestError as error:
            problems.extend(error.problems)
    if problems:
        raise InvalidRequestError(problems)
    spec = check_kind_and_spec(kind, parse_json_object("spec_json", spec_json, required=True), planner_kinds)
    return ApplyArguments(
        injection_id=injection_id,
        owner=owner,
        kind=kind,
        spec=spec,
        container_id=container_id,
        record_id=record_id,
        facts=parse_json_object("target.facts_json", facts_json, required=False),
        lease_ttl_seconds=lease_ttl_seconds,
        slot=slot,
    )
