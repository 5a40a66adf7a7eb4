"""StressChaos: burn CPU or eat memory inside the selected containers.

The stressor models (:class:`CPUStressor`, :class:`MemoryStressor`) and the memory size
grammar (:func:`parse_memory_size`) are shared with PhysicalMachineChaos and the agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from .base import CrdInfo, Issue, Model, RuleContext
from .common import ChaosResource, ChaosStatus, ContainerSelector
from .registry import register
from .types import Duration

#: stress-ng runs at most this many workers per stressor.
MAX_WORKERS = 8192

# Chaos Mesh checks sizes with docker/go-units' FromHumanSize: a non-negative decimal number, an
# optional single space, then nothing, "b", or k/m/g/t/p followed by nothing, "b" or "ib", in any
# case. The stressor (memStress) reads "kb" as 1000 and "kib" as 1024 bytes; so do we.
_SIZE = re.compile(
    r"^(?P<number>\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?) ?(?P<unit>[A-Za-z]*)$"
)
_DECIMAL_UNITS = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_BINARY_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
# Go's strconv.Atoi: an optional sign, then ASCII digits.
_PERCENT = re.compile(r"^[+-]?[0-9]+%$")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class MemorySize:
    """A parsed memory size: a byte count, or a percent of the machine's total memory."""

    amount: int
    is_percent: bool = False

    def bytes_of(self, total_bytes: int) -> int:
        """The size in bytes, given the total memory a percent refers to."""
        return total_bytes * self.amount // 100 if self.is_percent else self.amount


def _unit_multiplier(unit: str) -> int | None:
    lowered = unit.lower()
    if lowered in ("", "b"):
        return 1
    prefix, rest = lowered[:1], lowered[1:]
    if rest in ("", "b"):
        return _DECIMAL_UNITS.get(prefix)
    if rest == "ib":
        return _BINARY_UNITS.get(prefix)
    return None


def parse_memory_size(text: str) -> MemorySize:
    """``"256MB"`` → 256 000 000 bytes, ``"1GiB"`` → 2^30, ``"50%"`` → half the memory.

    Accepts what Chaos Mesh's webhook accepts: a whole percent 0..100, or a number with an
    optional unit B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB, P/PB/PiB (any case, one optional
    space). Fractions of a byte are dropped, as Go's conversion to int64 does.
    """
    if text.endswith("%"):
        if not _PERCENT.match(text):
            raise ValueError("a percent is a whole number followed by %")
        percent = int(text[:-1])
        if not 0 <= percent <= 100:
            raise ValueError("a percent must be in 0..100")
        return MemorySize(percent, is_percent=True)
    match = _SIZE.match(text)
    if not match:
        raise ValueError("expected a number and an optional unit")
    multiplier = _unit_multiplier(match.group("unit"))
    if multiplier is None:
        unit = match.group("unit")
        raise ValueError(f'"{unit}" is not a unit; use B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB')
    number = Decimal(match.group("number"))
    # Sized by its exponent first: "1e999999999" must neither overflow Decimal nor build a huge int.
    if number.adjusted() > 20 or number * multiplier > _INT64_MAX:
        raise ValueError("more bytes than an int64 holds")
    return MemorySize(int(number * multiplier))


def _memory_size_or_empty(value: str) -> str:
    # An empty size means "unset": the stressor then takes all available memory.
    if value == "":
        return value
    try:
        parse_memory_size(value)
    except ValueError as error:
        raise PydanticCustomError(
            "memory_size",
            '"{value}" is not a memory size: {reason} (e.g. "256MB", "1GiB", "50%")',
            {"value": value, "reason": str(error)},
        ) from None
    return value


#: A memory size as Chaos Mesh writes it: "256MB", "1GiB", "50%"; empty means unset.
MemorySizeStr = Annotated[str, AfterValidator(_memory_size_or_empty)]


class Stressor(Model):
    """What every stressor has: how many stress-ng workers to run."""

    workers: int = Field(le=MAX_WORKERS, description="How many workers run the stressor (1..8192).")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        # Chaos Mesh silently skips a stressor with 0 workers; an experiment that stresses
        # nothing is a mistake worth saying so.
        if self.workers < 1:
            yield Issue(("workers",), f"{self.workers} must be at least 1 (up to {MAX_WORKERS})")
        yield from super().rules(ctx)


class CPUStressor(Stressor):
    """Keeps CPUs busy: each worker loads one CPU to the given percent."""

    load: int | None = Field(
        default=None, ge=0, le=100, description="Percent load per worker; 0 sleeps, 100 is full load."
    )
    options: list[str] | None = Field(default=None, description="Extra stress-ng options.")


class MemoryStressor(Stressor):
    """Allocates and touches memory until the size is held, shared out among the workers.

    The size is the total over all workers, as Chaos Mesh's memory stressor (memStress) reads it.
    """

    size: MemorySizeStr | None = Field(
        default=None,
        description='The memory to take: "256MB", "1GiB" or "50%" of the total; unset, all available.',
    )
    oom_score_adj: int = Field(
        default=0, ge=-1000, le=1000, description="oom_score_adj of the stressing process (-1000..1000)."
    )
    options: list[str] | None = Field(default=None, description="Extra options for the stressor.")


class Stressors(Model):
    """The stressors to run; at least one."""

    memory: MemoryStressor | None = None
    cpu: CPUStressor | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.memory is None and self.cpu is None:
            yield Issue((), "needs at least one stressor: cpu or memory")


class StressChaosSpec(ContainerSelector):
    """Which containers to stress, with which stressors, for how long."""

    stressors: Stressors | None = Field(default=None, description="CPU and memory stressors.")
    stressng_stressors: str | None = Field(
        default=None,
        description="Raw stress-ng arguments, for stressors the structured form lacks; wins over stressors.",
    )
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        if self.stressors is None and not (self.stressng_stressors or "").strip():
            yield Issue(
                ("stressors",),
                "is required unless stressngStressors is given (e.g. stressors: {cpu: {workers: 1}})",
            )


class StressInstance(Model):
    """The stress processes running for one container."""

    uid: str | None = Field(default=None, description="The stress-ng process's identifier.")
    memory_uid: str | None = Field(default=None, description="The memory stressor's identifier.")
    start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    memory_start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})


class StressChaosStatus(ChaosStatus):
    """The shared chaos status, plus the stress processes per container."""

    instances: dict[str, StressInstance] | None = None


@register
class StressChaos(ChaosResource):
    """StressChaos runs CPU and memory stressors inside the selected containers."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="stresschaos",
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(("duration", ".spec.duration", "string", "How long the chaos lasts"),),
    )

    spec: StressChaosSpec
    status: StressChaosStatus | None = None
