"""How many of the matched pods a mode picks, and which: Chaos Mesh's ``FilterObjectsByMode``.

- ``one``: one pod at random.
- ``all``: every matched pod.
- ``fixed``: ``min(value, count)`` pods at random; ``value`` must be an integer > 0.
- ``fixed-percent``: ``ceil(count * value / 100)`` pods, ``value`` an integer in (0, 100].
  Chaos Mesh computes ``math.Ceil(float64(count) * float64(value) / 100)``; for any count a
  cluster can hold that equals the exact integer ceiling used here, so at least one pod is
  picked whenever any matched.
- ``random-max-percent``: a percent ``p`` drawn uniformly from the integers ``[0, value]``,
  then ``ceil(count * p / 100)`` pods. As in Chaos Mesh, drawing 0 picks no pod at all.

Values are parsed as Go's ``strconv.Atoi`` does (an optional sign and decimal digits).
Randomness comes from the ``random.Random`` the caller passes in, so a seed makes a plan
reproducible; the chosen positions are returned sorted, so the plan lists pods in a stable
order (Chaos Mesh's order is that of its random draw, which nothing depends on).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from faultmesh.api.base import quote
from faultmesh.api.common import SelectorMode

from .errors import SelectionError

_ATOI = re.compile(r"[+-]?[0-9]+")

MODES = tuple(mode.value for mode in SelectorMode)


@dataclass(frozen=True)
class ModeChoice:
    """The positions a mode picked out of ``count`` candidates, and how it got there."""

    positions: tuple[int, ...]
    explanation: str
    #: The percent random-max-percent drew; None for the other modes.
    drawn_percent: int | None = None


def percent_count(count: int, percent: int) -> int:
    """``ceil(count * percent / 100)`` in exact integer arithmetic."""
    return -(-count * percent // 100)


def _integer(mode: str, value: str | None, wants: str) -> int:
    text = value or ""
    if not _ATOI.fullmatch(text):
        raise SelectionError(f"{quote(text)} is not an integer; mode {mode} needs {wants}", ("value",))
    return int(text)


def _percent(mode: str, value: str | None) -> int:
    percent = _integer(mode, value, "a percent in (0, 100]")
    if not 0 < percent <= 100:
        raise SelectionError(f"{quote(value or '')} must be in (0, 100] with mode {mode}", ("value",))
    return percent


def _pick(count: int, number: int, rng: random.Random) -> tuple[int, ...]:
    if number >= count:
        return tuple(range(count))
    return tuple(sorted(rng.sample(range(count), number)))


def choose(mode: str, value: str | None, count: int, rng: random.Random) -> ModeChoice:
    """Pick positions in ``range(count)`` by ``mode``/``value``; raise SelectionError when invalid.

    ``count`` must be positive: with nothing matched there is nothing to choose from (the
    caller reports why nothing matched instead).
    """
    if count <= 0:
        raise SelectionError("cannot choose from an empty list of pods")
    plural = "pod" if count == 1 else "pods"
    if mode == SelectorMode.ONE:
        return ModeChoice((rng.randrange(count),), f"mode one: 1 of {count} matched {plural}")
    if mode == SelectorMode.ALL:
        return ModeChoice(tuple(range(count)), f"mode all: {count} of {count} matched {plural}")
    if mode == SelectorMode.FIXED:
        wanted = _integer(mode, value, "a count > 0")
        if wanted <= 0:
            raise SelectionError(f"{quote(value or '')} must be greater than 0 with mode fixed", ("value",))
        number = min(wanted, count)
        return ModeChoice(
            _pick(count, number, rng),
            f"mode fixed {wanted}: {number} of {count} matched {plural} (min({wanted}, {count}))",
        )
    if mode == SelectorMode.FIXED_PERCENT:
        percent = _percent(mode, value)
        number = percent_count(count, percent)
        return ModeChoice(
            _pick(count, number, rng),
            f"mode fixed-percent {percent}%: {number} of {count} matched {plural} (ceil({count}·{percent}/100))",
        )
    if mode == SelectorMode.RANDOM_MAX_PERCENT:
        most = _percent(mode, value)
        drawn = rng.randint(0, most)
        number = percent_count(count, drawn)
        return ModeChoice(
            _pick(count, number, rng),
            f"mode random-max-percent {most}%: drew {drawn}%, {number} of {count} matched {plural}"
            f" (ceil({count}·{drawn}/100))",
            drawn_percent=drawn,
        )
    raise SelectionError(f"{quote(mode)} is not a mode; use one of {', '.join(MODES)}", ("mode",))
