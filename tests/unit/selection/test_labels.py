"""Label key/value syntax (Kubernetes' rules) and set-based requirements."""

from __future__ import annotations

import pytest

from faultmesh.selection.labels import Requirement, label_key_problem, label_value_problem


@pytest.mark.parametrize("key", ["app", "app.kubernetes.io/name", "a", "A_b-c.d", "x" * 63, f"{'a' * 253}/n", "Z9"])
def test_valid_label_keys(key: str) -> None:
    assert label_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "the name part is empty"),
        ("a/b/c", 'at most one "/" may separate prefix and name'),
        ("/name", 'the prefix before "/" is empty'),
        ("example.com/", "the name part is empty"),
        ("Example.com/app", "the prefix must be a DNS subdomain"),
        (f"{'a' * 254}/n", "the prefix must be a DNS subdomain"),
        ("x" * 64, "longer than 63 characters"),
        ("-app", "the name part must be letters, digits"),
        ("app!", "the name part must be letters, digits"),
    ],
)
def test_invalid_label_keys(key: str, problem: str) -> None:
    found = label_key_problem(key)
    assert found is not None and problem in found and found.startswith(f'"{key}" is not a label key')


@pytest.mark.parametrize("value", ["", "web", "v1.2.3", "a_b", "x" * 63])
def test_valid_label_values(value: str) -> None:
    assert label_value_problem(value) is None


@pytest.mark.parametrize("value", ["x" * 64, "a b", "web/x", "_a", "a.", "ü"])
def test_invalid_label_values(value: str) -> None:
    assert label_value_problem(value) is not None


def test_requirements() -> None:
    labels = {"app": "web", "tier": ""}
    assert Requirement("app", "Equals", frozenset({"web"})).matches(labels)
    assert Requirement("tier", "Equals", frozenset({""})).matches(labels)
    assert not Requirement("zone", "Equals", frozenset({""})).matches(labels)
    assert Requirement("app", "In", frozenset({"db", "web"})).matches(labels)
    assert not Requirement("app", "NotIn", frozenset({"web"})).matches(labels)
    assert Requirement("zone", "NotIn", frozenset({"a"})).matches(labels)
    assert Requirement("tier", "Exists").matches(labels)
    assert Requirement("zone", "DoesNotExist").matches(labels)
    assert not Requirement("app", "DoesNotExist").matches(labels)


def test_requirement_descriptions() -> None:
    assert Requirement("app", "Equals", frozenset({"web"})).describe() == "app=web"
    assert Requirement("app", "NotIn", frozenset({"b", "a"})).describe() == "app notin (a, b)"
    assert Requirement("app", "Exists").describe() == "app"
    assert Requirement("app", "DoesNotExist").describe() == "!app"
