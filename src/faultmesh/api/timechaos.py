"""TimeChaos: shift the clocks the selected containers' processes read.

Besides the model, the pure conversions the agent needs: clock names to Linux clock ids and to
the mask of clocks to shift, and the offset to (seconds, nanoseconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, RuleContext, not_one_of, suggest
from .common import ChaosResource, ChaosStatus, ContainerSelector
from .registry import register
from .types import Duration, StrictDuration, parse_go_duration

#: The clocks Chaos Mesh can shift, with their ids from Linux's ``uapi/linux/time.h``.
CLOCK_IDS: dict[str, int] = {
    "CLOCK_REALTIME": 0,
    "CLOCK_MONOTONIC": 1,
    "CLOCK_PROCESS_CPUTIME_ID": 2,
    "CLOCK_THREAD_CPUTIME_ID": 3,
    "CLOCK_MONOTONIC_RAW": 4,
    "CLOCK_REALTIME_COARSE": 5,
    "CLOCK_MONOTONIC_COARSE": 6,
    "CLOCK_BOOTTIME": 7,
    "CLOCK_REALTIME_ALARM": 8,
    "CLOCK_BOOTTIME_ALARM": 9,
}

#: The clocks shifted when ``clockIds`` is empty: wall-clock time only, as in Chaos Mesh.
DEFAULT_CLOCK_IDS: tuple[str, ...] = ("CLOCK_REALTIME",)

_NANOSECONDS = 1_000_000_000


def clock_id(name: str) -> int:
    """``"CLOCK_MONOTONIC"`` → 1; ValueError for a name Chaos Mesh does not shift."""
    try:
        return CLOCK_IDS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a clock{suggest(name, CLOCK_IDS)}") from None


def clock_mask(names: Iterable[str]) -> int:
    """The bit mask of clocks to shift, bit ``id`` per clock, as the time injector takes it."""
    mask = 0
    for name in names:
        mask |= 1 << clock_id(name)
    return mask


def offset_parts(offset: str) -> tuple[int, int]:
    """A Go duration → (seconds, nanoseconds), both truncated toward zero as Go divides.

    ``"-1.5s"`` → (-1, -500000000): the two parts carry the same sign.
    """
    nanoseconds = parse_go_duration(offset)
    magnitude_seconds, magnitude_nanoseconds = divmod(abs(nanoseconds), _NANOSECONDS)
    sign = -1 if nanoseconds < 0 else 1
    return sign * magnitude_seconds, sign * magnitude_nanoseconds


class TimeChaosSpec(ContainerSelector):
    """Which containers, which clocks, and by how much to shift them."""

    time_offset: StrictDuration = Field(
        description='How far to shift the clocks, a signed Go duration such as "-10m" or "2h".'
    )
    clock_ids: list[str] | None = Field(
        default_factory=lambda: list(DEFAULT_CLOCK_IDS),
        description="The clocks to shift, e.g. CLOCK_REALTIME, CLOCK_MONOTONIC; default CLOCK_REALTIME.",
    )
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    remote_cluster: str | None = None

    def apply_defaults(self, ctx: RuleContext) -> None:
        super().apply_defaults(ctx)
        # Chaos Mesh's webhook fills an empty list as well as a missing one.
        if not self.clock_ids:
            self.clock_ids = list(DEFAULT_CLOCK_IDS)

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        for index, name in enumerate(self.clock_ids or []):
            if name not in CLOCK_IDS:
                yield Issue(
                    ("clockIds", index),
                    not_one_of(name, "a clock", CLOCK_IDS),
                )

    def offset_nanoseconds(self) -> int:
        return parse_go_duration(self.time_offset)

    def mask(self) -> int:
        """The mask of the clocks to shift (the default clock when none are named)."""
        return clock_mask(self.clock_ids or DEFAULT_CLOCK_IDS)


class TimeChaosStatus(ChaosStatus):
    """TimeChaos keeps only the shared chaos status."""


@register
class TimeChaos(ChaosResource):
    """TimeChaos shifts the clocks that processes in the selected containers read."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="timechaos",
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(("duration", ".spec.duration", "string", "How long the chaos lasts"),),
    )

    spec: TimeChaosSpec
    status: TimeChaosStatus | None = None
