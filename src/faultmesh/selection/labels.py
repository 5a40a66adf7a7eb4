"""Kubernetes label syntax and set-based requirements, as label selectors evaluate them.

Chaos Mesh turns ``labelSelectors``/``expressionSelectors`` into a Kubernetes label selector
and parses ``annotationSelectors`` with the same grammar, so keys and values of both must be
valid label keys and values; an invalid one is refused rather than silently matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from faultmesh.api.base import quote

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE = 'letters, digits, "-", "_" and ".", starting and ending with a letter or digit'

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a label key (``[prefix/]name``), or None when it is one."""
    parts = key.split("/")
    if len(parts) > 2:
        return f'{quote(key)} is not a label key: at most one "/" may separate prefix and name'
    if len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return f'{quote(key)} is not a label key: the prefix before "/" is empty'
        if len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return (
                f"{quote(key)} is not a label key: the prefix must be a DNS subdomain"
                ' (lowercase letters, digits, "-" and ".", at most 253 characters)'
            )
    else:
        name = parts[0]
    if not name:
        return f"{quote(key)} is not a label key: the name part is empty"
    if len(name) > 63:
        return f"{quote(key)} is not a label key: the name part is longer than 63 characters"
    if not _NAME.fullmatch(name):
        return f"{quote(key)} is not a label key: the name part must be {_NAME_RULE}"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a label value (empty, or up to 63 name characters), or None."""
    if not value:
        return None
    if len(value) > 63:
        return f"{quote(value)} is not a label value: longer than 63 characters"
    if not _NAME.fullmatch(value):
        return f"{quote(value)} is not a label value: it must be {_NAME_RULE}"
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector: ``key`` with an operator over ``values``.

    ``Equals`` (from a ``key: value`` map) behaves as ``In`` with one value.
    """

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator in ("In", "Equals"):
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    def describe(self) -> str:
        if self.operator == "Equals":
            (value,) = self.values
            return f"{self.key}={value}"
        if self.operator in ("In", "NotIn"):
            shown = ", ".join(sorted(self.values))
            return f"{self.key} {self.operator.lower()} ({shown})"
        return self.key if self.operator == "Exists" else f"!{self.key}"


def matches_all(requirements: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in requirements)
