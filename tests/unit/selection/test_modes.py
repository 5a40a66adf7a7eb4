"""Mode arithmetic: Chaos Mesh's counts, bounds, randomness from a seed, and refused values."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.selection import SelectionError, choose, percent_count

counts = st.integers(min_value=1, max_value=2000)
percents = st.integers(min_value=1, max_value=100)
seeds = st.integers(min_value=0, max_value=2**32)


def _go_ceil(count: int, percent: int) -> int:
    # Chaos Mesh's formula, in floating point as Go computes it.
    return math.ceil(float(count) * float(percent) / 100)


@given(count=st.integers(min_value=0, max_value=10**9), percent=st.integers(min_value=0, max_value=100))
def test_percent_count_is_chaos_mesh_float_ceiling(count: int, percent: int) -> None:
    assert percent_count(count, percent) == _go_ceil(count, percent)


def _check_positions(positions: tuple[int, ...], count: int) -> None:
    assert list(positions) == sorted(set(positions)), "sorted, no duplicates"
    assert all(0 <= position < count for position in positions), "a subset of the candidates"


@given(count=counts, seed=seeds)
def test_one_picks_exactly_one(count: int, seed: int) -> None:
    choice = choose("one", None, count, random.Random(seed))
    assert len(choice.positions) == 1
    _check_positions(choice.positions, count)


@given(count=counts, seed=seeds)
def test_all_picks_everything_in_order(count: int, seed: int) -> None:
    assert choose("all", None, count, random.Random(seed)).positions == tuple(range(count))


@given(count=counts, wanted=st.integers(min_value=1, max_value=3000), seed=seeds)
def test_fixed_picks_min_of_value_and_count(count: int, wanted: int, seed: int) -> None:
    choice = choose("fixed", str(wanted), count, random.Random(seed))
    assert len(choice.positions) == min(wanted, count)
    _check_positions(choice.positions, count)


@given(count=counts, percent=percents, seed=seeds)
def test_fixed_percent_picks_the_ceiling(count: int, percent: int, seed: int) -> None:
    choice = choose("fixed-percent", str(percent), count, random.Random(seed))
    assert len(choice.positions) == _go_ceil(count, percent)
    assert len(choice.positions) >= 1, "a percent > 0 of a non-empty list picks at least one"
    _check_positions(choice.positions, count)


@given(count=counts, most=percents, seed=seeds)
def test_random_max_percent_draws_then_takes_the_ceiling(count: int, most: int, seed: int) -> None:
    choice = choose("random-max-percent", str(most), count, random.Random(seed))
    assert choice.drawn_percent is not None and 0 <= choice.drawn_percent <= most
    assert len(choice.positions) == _go_ceil(count, choice.drawn_percent)
    assert len(choice.positions) <= _go_ceil(count, most)
    _check_positions(choice.positions, count)


@given(
    mode=st.sampled_from(["one", "all", "fixed", "fixed-percent", "random-max-percent"]),
    value=percents,
    count=counts,
    seed=seeds,
)
def test_same_seed_same_choice(mode: str, value: int, count: int, seed: int) -> None:
    first = choose(mode, str(value), count, random.Random(seed))
    again = choose(mode, str(value), count, random.Random(seed))
    assert first == again


def test_random_max_percent_reaches_both_ends_and_can_pick_nothing() -> None:
    drawn = {choose("random-max-percent", "2", 10, random.Random(seed)).drawn_percent for seed in range(200)}
    assert drawn == {0, 1, 2}
    nothing = next(
        choice
        for choice in (choose("random-max-percent", "2", 10, random.Random(seed)) for seed in range(200))
        if choice.drawn_percent == 0
    )
    assert nothing.positions == ()
    assert nothing.explanation == "mode random-max-percent 2%: drew 0%, 0 of 10 matched pods (ceil(10·0/100))"


def test_fixed_choices_vary_with_the_seed() -> None:
    picks = {choose("fixed", "3", 50, random.Random(seed)).positions for seed in range(20)}
    assert len(picks) > 1


def test_explanations() -> None:
    rng = random.Random(1)
    assert choose("fixed-percent", "30", 7, rng).explanation == (
        "mode fixed-percent 30%: 3 of 7 matched pods (ceil(7·30/100))"
    )
    assert choose("fixed", "5", 2, rng).explanation == "mode fixed 5: 2 of 2 matched pods (min(5, 2))"
    assert choose("all", None, 1, rng).explanation == "mode all: 1 of 1 matched pod"


@pytest.mark.parametrize(
    ("mode", "value", "message"),
    [
        ("fixed", None, 'value: "" is not an integer; mode fixed needs a count > 0'),
        ("fixed", "2.5", 'value: "2.5" is not an integer; mode fixed needs a count > 0'),
        ("fixed", "1_0", 'value: "1_0" is not an integer; mode fixed needs a count > 0'),
        ("fixed", " 3", 'value: " 3" is not an integer; mode fixed needs a count > 0'),
        ("fixed", "0", 'value: "0" must be greater than 0 with mode fixed'),
        ("fixed", "-2", 'value: "-2" must be greater than 0 with mode fixed'),
        ("fixed-percent", "0", 'value: "0" must be in (0, 100] with mode fixed-percent'),
        ("fixed-percent", "101", 'value: "101" must be in (0, 100] with mode fixed-percent'),
        ("fixed-percent", "50%", 'value: "50%" is not an integer; mode fixed-percent needs a percent in (0, 100]'),
        ("random-max-percent", "-1", 'value: "-1" must be in (0, 100] with mode random-max-percent'),
        (
            "sometimes",
            None,
            'mode: "sometimes" is not a mode; use one of one, all, fixed, fixed-percent, random-max-percent',
        ),
    ],
)
def test_bad_values_are_refused(mode: str, value: str | None, message: str) -> None:
    with pytest.raises(SelectionError) as caught:
        choose(mode, value, 10, random.Random(0))
    assert str(caught.value) == message


def test_go_atoi_forms_are_accepted() -> None:
    assert len(choose("fixed", "+3", 10, random.Random(0)).positions) == 3
    assert len(choose("fixed", "007", 10, random.Random(0)).positions) == 7


def test_nothing_to_choose_from() -> None:
    with pytest.raises(SelectionError, match="cannot choose from an empty list of pods"):
        choose("all", None, 0, random.Random(0))
