"""Scalar grammar: Go durations (signed, fractional, multi-unit), float strings, quantities."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.types import parse_go_duration, parse_quantity

UNITS_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("300ms", 300 * 10**6),
        ("-1.5h", -5400 * 10**9),
        ("2h45m", (2 * 3600 + 45 * 60) * 10**9),
        ("1h0m0.5s", 3600 * 10**9 + 5 * 10**8),
        ("+10s", 10 * 10**9),
        (".5s", 5 * 10**8),
        ("1.s", 10**9),
        ("10µs", 10**4),
        ("100ns", 100),
    ],
)
def test_go_durations_parse_as_go_does(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "10", "10x", "1d", "h", "-", ".s", "1.5", "10 s", "1h-5m", "ms"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


terms = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from(sorted(UNITS_NS))),
    min_size=1,
    max_size=4,
)


@given(terms, st.booleans())
def test_any_sequence_of_terms_sums_its_parts(parts: list[tuple[int, str]], negative: bool) -> None:
    text = ("-" if negative else "") + "".join(f"{number}{unit}" for number, unit in parts)
    expected = sum(number * UNITS_NS[unit] for number, unit in parts)
    assert parse_go_duration(text) == (-expected if negative else expected)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_fractions_are_exact(whole: int, thousandths: int) -> None:
    assert parse_go_duration(f"{whole}.{thousandths:03d}s") == whole * 10**9 + thousandths * 10**6


@pytest.mark.parametrize(
    ("text", "value"),
    [("1Gi", 2**30), ("256Mi", 256 * 2**20), ("1k", 1000), ("500m", Decimal("0.5")), ("1e3", 1000), ("2", 2)],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1GB", "Gi", "1.2.3", "one"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)
