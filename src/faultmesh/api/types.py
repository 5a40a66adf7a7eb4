"""Scalar types with Chaos Mesh's grammar: Go durations, percents, float strings, quantities.

Each is an ``Annotated`` string or int whose validator raises a message that quotes the value
and says what would be right; the loader puts the field path in front of it.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

_GO_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_GO_TERM = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Parse Go's ``time.ParseDuration`` grammar; return nanoseconds.

    Accepts ``300ms``, ``-1.5h``, ``2h45m``, ``1h0m0.5s`` and the bare ``0``; a unit is
    required on every other number, as in Go.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("empty duration")
    body = text
    sign = 1
    if body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError("no number")
    total = Decimal(0)
    position = 0
    while position < len(body):
        match = _GO_TERM.match(body, position)
        if not match or match.group(1) in ("", "."):
            raise ValueError(f"bad term at {body[position:]!r}")
        number, unit = match.groups()
        total += Decimal(number) * _GO_UNITS_NS[unit]
        position = match.end()
    nanoseconds = int(total)
    if nanoseconds > 2**63 - 1:
        raise ValueError("overflows int64 nanoseconds")
    return sign * nanoseconds


def duration_seconds(text: str) -> float:
    """A Go duration string as seconds."""
    return parse_go_duration(text) / 1e9


def _duration(value: str) -> str:
    try:
        parse_go_duration(value)
    except ValueError:
        raise PydanticCustomError(
            "duration",
            '"{value}" is not a duration (e.g. 100ms, 1.5s, 2h45m)',
            {"value": value},
        ) from None
    return value


def _duration_or_empty(value: str) -> str:
    # Chaos Mesh's Duration webhook type lets an empty string through as "not set".
    return value if value == "" else _duration(value)


def _non_negative_duration(value: str) -> str:
    _duration(value)
    if parse_go_duration(value) < 0:
        raise PydanticCustomError(
            "duration", '"{value}" is negative; a duration here must be ≥ 0', {"value": value}
        )
    return value


#: A Go duration, possibly signed ("300ms", "-1.5h", "2h45m"); empty means unset.
Duration = Annotated[str, AfterValidator(_duration_or_empty)]
#: A Go duration that must parse (no empty string).
StrictDuration = Annotated[str, AfterValidator(_duration)]
#: A Go duration that may not be negative.
NonNegativeDuration = Annotated[str, AfterValidator(_non_negative_duration)]


def _float_str(value: str) -> str:
    try:
        float(value)
    except ValueError:
        raise PydanticCustomError(
            "float_str", '"{value}" is not a number (e.g. "25", "0.5")', {"value": value}
        ) from None
    return value


#: A number written as a string, as Chaos Mesh's FloatStr (netem correlations, percents).
FloatStr = Annotated[str, AfterValidator(_float_str)]


def _percent_str(value: str) -> str:
    _float_str(value)
    if not 0 <= float(value) <= 100:
        raise PydanticCustomError(
            "percent", '"{value}" is not a percent in 0..100', {"value": value}
        )
    return value


#: A percent 0..100 written as a string (netem loss, duplicate, corrupt, reorder).
PercentStr = Annotated[str, AfterValidator(_percent_str)]

#: An integer percent 0..100.
Percent = Annotated[int, Field(ge=0, le=100)]

#: An int64 on the wire (the CRD says ``format: int64``).
Int64 = Annotated[int, Field(json_schema_extra={"format": "int64"})]
#: An int32 on the wire.
Int32 = Annotated[int, Field(json_schema_extra={"format": "int32"})]


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError(
            "base64",
            '"{value}" is not base64 (Go []byte on the wire; e.g. "aGVsbG8=" for "hello")',
            {"value": value if len(value) <= 40 else value[:40] + "…"},
        ) from None
    return value


#: Bytes as Kubernetes carries them: standard, padded base64 (the CRD says ``format: byte``).
Base64 = Annotated[str, AfterValidator(_base64), Field(json_schema_extra={"format": "byte"})]

_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def parse_quantity(text: str) -> Decimal:
    """Kubernetes resource.Quantity → its value (``"1Gi"`` → 1073741824)."""
    if not _QUANTITY.match(text):
        raise ValueError(f"{text!r} is not a quantity")
    match = re.match(r"^([+-]?[0-9.]+)(.*)$", text)
    if not match:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix = match.groups()
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    decimal: dict[str, Decimal | int] = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
               "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
    try:
        value = Decimal(number)
    except InvalidOperation as error:
        raise ValueError(f"{text!r} is not a quantity") from error
    if suffix in binary:
        return value * binary[suffix]
    if suffix in decimal:
        return value * decimal[suffix]
    return Decimal(text)  # exponent form, e.g. 1e3
