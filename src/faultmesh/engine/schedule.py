"""When a Schedule fires, what holds it back, and which past runs it drops: Chaos Mesh's schedule controllers.

Chaos Mesh splits a Schedule into small controllers; their decisions are reproduced here, purely (time comes in
as epoch seconds, randomness as a :class:`random.Random`), so that a front end only has to persist and act:

- :func:`recent_unmet` finds the most recent scheduled time that passed without a run, counting from the last
  run (``status.time``) or, before the first one, from the Schedule's creation. With ``startingDeadlineSeconds``
  only runs within that many seconds of now count; without it, more than 100 missed runs is an error (the
  Schedule stops firing and says so), as Kubernetes' CronJob controller that Chaos Mesh copied did.
- :func:`decide_firing` decides whether to spawn now: never while paused; under ``Forbid`` not while one of its
  experiments is unfinished (the missed run is not consumed, so it fires once that one ends, if still within
  the starting deadline).
- :func:`history_cleanup` picks the oldest runs beyond ``historyLimit`` to delete: finished ones always, and
  unfinished ones only when waiting would not finish them (no duration, or a duration already over); a
  one-shot or a run whose duration is still going is skipped until it ends.
- :func:`generate_name` names a spawned experiment as the API server's ``generateName`` does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from faultmesh.api.cron import CronSchedule

from .lifecycle import Event

#: More missed runs than this (without a starting deadline) and the Schedule refuses to guess which to run.
MAX_MISSED: Final = 100
#: The API server's generateName: 5 characters from an alphabet without vowels or look-alikes.
NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH: Final = 5
#: A Kubernetes object name is at most 63 characters here; the base is cut to leave room for the suffix.
MAX_NAME_LENGTH: Final = 63


class ScheduleTimeError(ValueError):
    """No run time can be worked out (too many missed runs, or a last run in the future)."""


@dataclass(frozen=True)
class Unmet:
    """The most recent run time that passed without a run (None: none), and the run time after it."""

    missed: float | None
    next_run: float | None


@dataclass(frozen=True)
class Child:
    """One experiment a Schedule made, as far as its decisions need it."""

    uid: str
    name: str
    created_at: float
    finished: bool
    one_shot: bool = False
    #: ``spec.duration`` in seconds; None runs until deleted.
    duration: float | None = None


@dataclass(frozen=True)
class Firing:
    """Whether to spawn an experiment now, for which run time, and the events to record either way."""

    spawn: bool
    missed: float | None
    next_run: float | None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Cleanup:
    """Children to delete (oldest first), and when to look again for those skipped because still running."""

    delete: tuple[str, ...]
    recheck_in: float | None


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _rfc1123z(epoch: float) -> str:
    return _moment(epoch).strftime("%a, %d %b %Y %H:%M:%S %z")


def _rfc3339(epoch: float) -> str:
    return _moment(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_after(cron: CronSchedule, epoch: float) -> float | None:
    """The first run strictly after ``epoch`` (whole seconds), or None when the schedule never fires again."""
    found = cron.next_after(_moment(epoch))
    return None if found is None else found.timestamp()


def recent_unmet(
    cron: CronSchedule,
    *,
    created_at: float,
    last_schedule: float | None,
    now: float,
    starting_deadline: float | None = None,
) -> Unmet:
    """The most recent run time in (earliest, now], where earliest is the last run or the creation, moved up to
    ``now - starting_deadline`` when that is later; raises :class:`ScheduleTimeError` past :data:`MAX_MISSED`."""
    earliest = last_schedule if last_schedule is not None else created_at
    if starting_deadline is not None:
        earliest = max(earliest, now - starting_deadline)
    if earliest > now:
        raise ScheduleTimeError(f"the earliest run time {_rfc3339(earliest)} is later than now ({_rfc3339(now)})")
    missed: float | None = None
    count = 0
    upcoming = next_after(cron, earliest)
    while upcoming is not None and upcoming <= now:
        missed = upcoming
        count += 1
        if count > MAX_MISSED:
            raise ScheduleTimeError(
                f"too many missed start times (> {MAX_MISSED}); set or decrease spec.startingDeadlineSeconds "
                "or check clock skew"
            )
        upcoming = next_after(cron, upcoming)
    return Unmet(missed, upcoming)


def decide_firing(
    cron: CronSchedule,
    *,
    created_at: float,
    last_schedule: float | None,
    now: float,
    starting_deadline: float | None = None,
    forbid: bool = True,
    paused: bool = False,
    children: Sequence[Child] = (),
) -> Firing:
    """Spawn now or not, as Chaos Mesh's schedule-cron controller decides on one reconcile."""
    if paused:
        return Firing(False, None, None)
    try:
        unmet = recent_unmet(
            cron, created_at=created_at, last_schedule=last_schedule, now=now, starting_deadline=starting_deadline
        )
    except ScheduleTimeError as error:
        return Firing(False, None, None, (Event("Warning", "Failed", f"Failed to get run time: {error}"),))
    if unmet.missed is None:
        return Firing(False, None, unmet.next_run)
    if starting_deadline is not None and unmet.missed + starting_deadline < now:
        # recent_unmet already ignores runs older than the deadline; kept for a clock that jumped meanwhile.
        message = f"Missed scheduled time to start a job: {_rfc1123z(unmet.missed)}"
        return Firing(False, unmet.missed, unmet.next_run, (Event("Warning", "MissSchedule", message),))
    if forbid:
        for child in sorted(children, key=lambda c: c.name):
            if not child.finished:
                message = f"Forbid spawning new job because: {child.name} is still running"
                return Firing(False, unmet.missed, unmet.next_run, (Event("Warning", "Forbid", message),))
    return Firing(True, unmet.missed, unmet.next_run)


def history_cleanup(children: Sequence[Child], history_limit: int | None, now: float) -> Cleanup:
    """The oldest children beyond ``history_limit`` that may go now (a missing limit keeps none)."""
    ordered = sorted(children, key=lambda c: (c.created_at, c.name))
    excess = len(ordered) - (history_limit or 0)
    delete: list[str] = []
    recheck: float | None = None
    for child in ordered[: max(excess, 0)]:
        if not child.finished:
            until_stop = _until_stop(child, now)
            if until_stop:
                recheck = until_stop if recheck is None else min(recheck, until_stop)
                continue
        delete.append(child.uid)
    return Cleanup(tuple(delete), recheck)


def _until_stop(child: Child, now: float) -> float:
    """Seconds until an unfinished child ends on its own; 0 when it will not (no duration, or it is over)."""
    if child.one_shot:
        return 1.0  # Chaos Mesh looks again a second later until the kill has been applied
    if child.duration is None:
        return 0.0
    return max(child.created_at + child.duration - now, 0.0)


def generate_name(base: str, rng: random.Random, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """``base`` (cut to fit) plus five random characters, avoiding the names in ``taken``."""
    stem = base[: MAX_NAME_LENGTH - NAME_SUFFIX_LENGTH]
    while True:
        name = stem + "".join(rng.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
        if name not in taken:
            return name
