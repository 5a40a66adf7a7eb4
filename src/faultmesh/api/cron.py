"""The schedule grammar of Chaos Mesh's Schedule kind, and when a schedule fires next.

Chaos Mesh parses ``spec.schedule`` with robfig/cron (optional seconds field, descriptors):

- five fields ``minute hour day-of-month month day-of-week``, or six with seconds first;
  each field a comma list of ``*``/``?``, ``N``, ``N-M``, any of them with ``/step``
  (``N/step`` runs from N to the field's maximum); months and weekdays also by name
  (``jan``, ``mon``), case-insensitive; weekdays are 0-6 with Sunday 0;
- ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``, ``@hourly``;
- ``@every <Go duration>`` (rounded down to whole seconds, at least one second);
- an optional ``TZ=<zone>`` or ``CRON_TZ=<zone>`` prefix.

croniter accepts a different dialect (``L``, ``W``, ``#``, ``H``, weekday 7, a year field;
``?`` only in day fields), so the grammar is checked here, field by field, exactly as
robfig/cron checks it; croniter then computes the run times from the canonical expression.
Everything here is pure: no clock is read, the caller passes the moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .types import parse_go_duration

#: robfig/cron gives up looking for a next run this many years ahead; so do we.
SEARCH_YEARS = 5


class CronError(ValueError):
    """A schedule that does not parse; the message says which part and what would be right."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = {name: number for number, name in enumerate(_MONTHS, start=1)}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY_NAMES = {name: number for number, name in enumerate(_WEEKDAYS)}

_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day of week", 0, 6, _WEEKDAY_NAMES),
)

#: Descriptor → the six fields it stands for (robfig/cron's own expansions).
DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_EVERY = "@every "
_GRAMMAR_HINT = (
    "expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, "
    "@every <duration>, or one of " + ", ".join(DESCRIPTORS)
)


@dataclass(frozen=True)
class FieldSet:
    """The values one field allows, and whether it was written as ``*``/``?`` (robfig's star)."""

    values: frozenset[int]
    star: bool


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: either a fixed delay (``@every``) or six field sets, in a time zone."""

    text: str
    timezone: tzinfo
    #: ``@every``: the delay between runs, whole seconds.
    every: timedelta | None = None
    #: second, minute, hour, day of month, month, day of week.
    fields: tuple[FieldSet, ...] = ()

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run strictly after ``moment`` (naive means UTC), at whole seconds.

        None when the schedule never fires within five years (``0 0 30 2 *``), as robfig/cron.
        """
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(self.timezone).replace(microsecond=0)
        if self.every is not None:
            return moment + self.every
        if any(not field.values for field in self.fields):
            return None
        try:
            found: datetime = croniter(
                self._croniter_expression(),
                moment,
                second_at_beginning=True,
                max_years_between_matches=SEARCH_YEARS,
            ).get_next(datetime)
        except CroniterBadDateError:
            return None
        return found

    def runs_after(self, moment: datetime) -> Iterator[datetime]:
        """Every run after ``moment``, in order (ends only if the schedule stops firing)."""
        current = self.next_after(moment)
        while current is not None:
            yield current
            current = self.next_after(current)

    def next_runs(self, moment: datetime, count: int) -> list[datetime]:
        runs: list[datetime] = []
        for run in self.runs_after(moment):
            if len(runs) == count:
                break
            runs.append(run)
        return runs

    def matches(self, moment: datetime) -> bool:
        """Whether a run falls on ``moment`` (to the second), by robfig/cron's day rule."""
        if self.every is not None:
            raise ValueError("an @every schedule runs relative to its start, not on fixed times")
        local = moment.astimezone(self.timezone) if moment.tzinfo else moment.replace(tzinfo=UTC)
        second, minute, hour, dom, month, dow = self.fields
        weekday = (local.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        in_dom = local.day in dom.values
        in_dow = weekday in dow.values
        # Either day field left as * means both must hold; both restricted means either may.
        day_ok = (in_dom and in_dow) if (dom.star or dow.star) else (in_dom or in_dow)
        return (
            local.second in second.values
            and local.minute in minute.values
            and local.hour in hour.values
            and local.month in month.values
            and day_ok
        )

    def _croniter_expression(self) -> str:
        parts = []
        for field in self.fields:
            if field.star:
                parts.append("*")
            else:
                parts.append(",".join(str(value) for value in sorted(field.values)))
        return " ".join(parts)


def parse_schedule(text: str, default_timezone: tzinfo = UTC) -> CronSchedule:
    """Parse a Schedule's ``spec.schedule``; raise :class:`CronError` naming what is wrong.

    ``default_timezone`` applies without a ``TZ=`` prefix (robfig/cron uses the controller's
    local zone; faultmesh runs in UTC unless told otherwise).
    """
    if not isinstance(text, str) or not text:
        raise CronError(f"is empty; {_GRAMMAR_HINT}")
    spec = text
    timezone = default_timezone
    if spec.startswith(("TZ=", "CRON_TZ=")):
        zone_end = spec.find(" ")
        if zone_end == -1:
            raise CronError("a TZ= prefix must be followed by a space and the schedule")
        zone_name = spec[spec.index("=") + 1 : zone_end]
        timezone = _zone(zone_name, default_timezone)
        spec = spec[zone_end:].strip()
    if spec.startswith("@"):
        return _descriptor(text, spec, timezone)
    words = spec.split()
    if len(words) not in (5, 6):
        raise CronError(f"has {len(words)} fields; {_GRAMMAR_HINT}")
    if len(words) == 5:
        words = ["0", *words]
    fields = tuple(_parse_field(word, field) for word, field in zip(words, _FIELDS, strict=True))
    return CronSchedule(text=text, timezone=timezone, fields=fields)


def schedule_problem(text: str) -> str | None:
    """Why ``text`` is not a valid schedule, or None if it is."""
    try:
        parse_schedule(text)
    except CronError as error:
        return str(error)
    return None


def next_run(text: str, after: datetime) -> datetime | None:
    """The first run of schedule ``text`` strictly after ``after``."""
    return parse_schedule(text).next_after(after)


def _zone(name: str, default_timezone: tzinfo) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return default_timezone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f'"{name}" is not a known time zone (e.g. UTC, Europe/Berlin)') from None


def _descriptor(text: str, spec: str, timezone: tzinfo) -> CronSchedule:
    if spec in DESCRIPTORS:
        words = DESCRIPTORS[spec].split()
        fields = tuple(_parse_field(word, field) for word, field in zip(words, _FIELDS, strict=True))
        return CronSchedule(text=text, timezone=timezone, fields=fields)
    if spec.startswith(_EVERY):
        duration = spec[len(_EVERY) :]
        try:
            nanoseconds = parse_go_duration(duration)
        except ValueError:
            raise CronError(f'@every needs a duration; "{duration}" is not one (e.g. 30s, 1h30m)') from None
        # robfig/cron runs an @every schedule at least a second apart, in whole seconds.
        seconds = max(nanoseconds // 1_000_000_000, 1)
        return CronSchedule(text=text, timezone=timezone, every=timedelta(seconds=seconds))
    name, known = spec.split(maxsplit=1)[0], ", ".join(DESCRIPTORS)
    raise CronError(f"unknown descriptor {name}; use @every <duration> or one of {known}")


def _parse_field(word: str, field: _Field) -> FieldSet:
    values: set[int] = set()
    star = False
    # Like robfig/cron, empty list items (",5", "1,,2") are skipped.
    for item in (part for part in word.split(",") if part):
        item_values, item_star = _parse_item(item, field)
        values |= item_values
        star = star or item_star
    return FieldSet(frozenset(values), star)


def _parse_item(item: str, field: _Field) -> tuple[set[int], bool]:
    range_text, *steps = item.split("/")
    if len(steps) > 1:
        raise CronError(f'{field.name} "{item}" has more than one "/"')
    bounds = range_text.split("-")
    star = False
    if bounds[0] in ("*", "?"):
        start, end, star = field.low, field.high, True
    else:
        start = _number(bounds[0], item, field)
        if len(bounds) == 1:
            end = start
        elif len(bounds) == 2:
            end = _number(bounds[1], item, field)
        else:
            raise CronError(f'{field.name} "{item}" has more than one "-"')
    step = 1
    if steps:
        step = _number(steps[0], item, field, names=False)
        if len(bounds) == 1:
            end = field.high  # "N/step" runs from N to the end of the field
        if step > 1:
            star = False  # "*/2" restricts the field
    if start < field.low:
        raise CronError(f'{field.name} "{item}": {start} is below the minimum {field.low}')
    if end > field.high:
        raise CronError(f'{field.name} "{item}": {end} is above the maximum {field.high}')
    if start > end:
        raise CronError(f'{field.name} "{item}": the range starts at {start}, after its end {end}')
    if step == 0:
        raise CronError(f'{field.name} "{item}": the step must be a positive number')
    return set(range(start, end + 1, step)), star


def _number(text: str, item: str, field: _Field, names: bool = True) -> int:
    if names and field.names and text.lower() in field.names:
        return field.names[text.lower()]
    # Go's strconv.Atoi: an optional sign, then ASCII digits.
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        allowed = f"{field.low}-{field.high}"
        if names and field.names:
            allowed += f" or a name such as {next(iter(field.names))}"
        raise CronError(f'{field.name} "{item}": "{text}" is not a number ({allowed})')
    number = int(text)
    if number < 0:
        raise CronError(f'{field.name} "{item}": negative numbers are not allowed')
    return number
