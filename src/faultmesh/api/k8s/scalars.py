"""Scalar types of the Kubernetes API as they appear on the wire.

``IntOrString`` becomes ``x-kubernetes-int-or-string`` in the generated CRDs (see ``api/crd.py``);
``Quantity`` is an int-or-string that must also read as a resource quantity (``500m``, ``1Gi``).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, PlainValidator
from pydantic_core import PydanticCustomError

from ..types import Int32, Int64

__all__ = ["QUANTITY_PATTERN", "DateTime", "Int32", "Int64", "IntOrString", "Quantity"]

#: Kubernetes' own pattern for a resource.Quantity, as the CRDs publish it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"  # the number
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"  # suffix or exponent
)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _int_or_string(value: object) -> int | str:
    # Kubernetes takes an integer or a string here, nothing else (not 0.5, not true).
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "int_or_string",
            '{value} is not an integer or a string (e.g. 8080 or "http")',
            {"value": repr(value)},
        )
    return value


def _quantity(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "quantity",
            '{value} is not a quantity; write it as an integer or a string (e.g. "500m", "0.5", "128Mi")',
            {"value": repr(value)},
        )
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise PydanticCustomError(
            "quantity", '"{value}" is not a quantity (e.g. 500m, 128Mi, 2)', {"value": value}
        )
    return value


#: An integer or a string, e.g. a port given by number or by name.
IntOrString = Annotated[int | str, PlainValidator(_int_or_string, json_schema_input_type=int | str)]
#: A resource quantity: an integer, or a string such as "500m" or "1Gi".
Quantity = Annotated[
    int | str,
    PlainValidator(_quantity, json_schema_input_type=int | str),
    Field(json_schema_extra={"pattern": QUANTITY_PATTERN}),
]
#: A metav1.Time: an RFC 3339 timestamp string.
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
