"""TimeChaos: the required signed offset, the clock names and their default, the pure conversions."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.base import format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.loader import ManifestError, load_text, validate_object
from faultmesh.api.timechaos import (
    CLOCK_IDS,
    DEFAULT_CLOCK_IDS,
    TimeChaos,
    TimeChaosSpec,
    clock_id,
    clock_mask,
    offset_parts,
)


def manifest(**spec: Any) -> str:
    body = {"mode": "one", "selector": {"labelSelectors": {"app": "tikv"}}, "timeOffset": "-10m", **spec}
    body = {key: value for key, value in body.items() if value is not None}
    return yaml.safe_dump(
        {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "TimeChaos",
            "metadata": {"name": "t"},
            "spec": body,
        }
    )


def load_one(text: str) -> TimeChaos:
    obj = load_text(text).objects[0]
    assert isinstance(obj, TimeChaos)
    return obj


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


# --- defaults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("clock_ids", [None, []])
def test_clock_ids_default_to_realtime_when_missing_or_empty(clock_ids: list[str] | None) -> None:
    text = manifest() if clock_ids is None else manifest(clockIds=clock_ids)
    chaos = load_one(text)
    assert chaos.spec.clock_ids == ["CLOCK_REALTIME"]
    assert chaos.to_dict()["spec"]["clockIds"] == ["CLOCK_REALTIME"]


def test_named_clocks_are_kept_in_order() -> None:
    chaos = load_one(manifest(clockIds=["CLOCK_MONOTONIC", "CLOCK_REALTIME"]))
    assert chaos.spec.clock_ids == ["CLOCK_MONOTONIC", "CLOCK_REALTIME"]
    assert chaos.spec.mask() == 0b11


@pytest.mark.parametrize("offset", ["-10m100ns", "2h45m", "+1.5s", "0", "-1µs", ".5h"])
def test_signed_go_durations_are_offsets(offset: str) -> None:
    assert load_one(manifest(timeOffset=offset)).spec.time_offset == offset


# --- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"timeOffset": None}, "spec.timeOffset", "is required"),
        ({"timeOffset": ""}, "spec.timeOffset", '"" is not a duration'),
        ({"timeOffset": "1S"}, "spec.timeOffset", '"1S" is not a duration'),
        ({"timeOffset": "-10"}, "spec.timeOffset", "is not a duration"),
        ({"timeOffset": 600}, "spec.timeOffset", "600 is not a string"),
        ({"clockIds": ["CLOCK_REALTIM"]}, "spec.clockIds[0]", 'did you mean "CLOCK_REALTIME"'),
        (
            {"clockIds": ["CLOCK_REALTIME", "clock_boottime"]},
            "spec.clockIds[1]",
            'did you mean "CLOCK_BOOTTIME"',
        ),
        ({"clockIds": ["CLOCK_TAI"]}, "spec.clockIds[0]", '"CLOCK_TAI" is not a clock'),
        ({"clockIds": ["wall"]}, "spec.clockIds[0]", "(one of CLOCK_REALTIME, CLOCK_MONOTONIC,"),
        ({"duration": "forever"}, "spec.duration", "is not a duration"),
        ({"mode": "random-max-percent", "value": "150"}, "spec.value", "(0,100]"),
    ],
)
def test_rule_refuses_with_field_path(spec: dict[str, Any], path: str, message: str) -> None:
    found = problems(manifest(**spec))
    assert path in found, found
    assert message in found[path]


def test_a_missing_spec_is_refused() -> None:
    text = "apiVersion: chaos-mesh.org/v1alpha1\nkind: TimeChaos\nmetadata: {name: bare}\n"
    assert problems(text) == {"spec": "is required"}


# --- clock names → ids and masks --------------------------------------------------------------


def test_clock_ids_are_linuxs() -> None:
    assert clock_id("CLOCK_REALTIME") == 0
    assert clock_id("CLOCK_MONOTONIC") == 1
    assert clock_id("CLOCK_BOOTTIME") == 7
    assert clock_id("CLOCK_BOOTTIME_ALARM") == 9
    assert sorted(CLOCK_IDS.values()) == list(range(10))
    assert DEFAULT_CLOCK_IDS == ("CLOCK_REALTIME",)


def test_unknown_clock_name_is_a_value_error_with_a_hint() -> None:
    with pytest.raises(ValueError, match='did you mean "CLOCK_MONOTONIC_RAW"'):
        clock_id("CLOCK_MONOTONIC_RAWW")
    with pytest.raises(ValueError):
        clock_mask(["CLOCK_REALTIME", "CLOCK_NOPE"])


def test_masks_set_one_bit_per_clock() -> None:
    assert clock_mask([]) == 0
    assert clock_mask(["CLOCK_REALTIME"]) == 1
    assert clock_mask(["CLOCK_REALTIME", "CLOCK_MONOTONIC"]) == 3
    assert clock_mask(list(CLOCK_IDS)) == 0b11_1111_1111


@given(st.lists(st.sampled_from(sorted(CLOCK_IDS))))
def test_a_mask_holds_exactly_the_named_clocks(names: list[str]) -> None:
    mask = clock_mask(names)
    assert {name for name, number in CLOCK_IDS.items() if mask & (1 << number)} == set(names)
    assert clock_mask(reversed(names)) == mask
    assert clock_mask(names + names) == mask


# --- offsets → (seconds, nanoseconds) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "parts"),
    [
        ("0", (0, 0)),
        ("1.5s", (1, 500_000_000)),
        ("-1.5s", (-1, -500_000_000)),
        ("-10m100ns", (-600, -100)),
        ("999ms", (0, 999_000_000)),
        ("-999ms", (0, -999_000_000)),
        ("2h", (7200, 0)),
    ],
)
def test_offsets_split_as_go_divides(offset: str, parts: tuple[int, int]) -> None:
    assert offset_parts(offset) == parts


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_offset_parts_recombine_and_share_the_sign(nanoseconds: int) -> None:
    seconds, rest = offset_parts(f"{nanoseconds}ns")
    assert seconds * 1_000_000_000 + rest == nanoseconds
    assert abs(rest) < 1_000_000_000
    assert seconds * rest >= 0  # never one part positive and the other negative


# --- SDK --------------------------------------------------------------------------------------


def test_sdk_round_trip() -> None:
    chaos = TimeChaos(
        metadata={"name": "skew", "namespace": "tikv"},
        spec=TimeChaosSpec(
            mode="one",
            selector=PodSelectorSpec(label_selectors={"app": "tikv"}),
            time_offset="-10m100ns",
            clock_ids=["CLOCK_REALTIME", "CLOCK_MONOTONIC"],
            container_names=["tikv"],
            duration="30s",
        ),
    )
    assert validate_object(chaos) == []
    assert chaos.spec.offset_nanoseconds() == -(600 * 10**9 + 100)
    data = chaos.to_dict()
    assert data["spec"]["timeOffset"] == "-10m100ns"
    assert data["spec"]["containerNames"] == ["tikv"]
    again = load_one(yaml.safe_dump(data))
    assert again.to_dict() == data


def test_sdk_default_clock_ids_without_validation() -> None:
    spec = TimeChaosSpec(mode="all", selector=PodSelectorSpec(), time_offset="1h")
    assert spec.clock_ids == ["CLOCK_REALTIME"]
    assert spec.mask() == 1


def test_sdk_object_reports_rule_issues_with_paths() -> None:
    chaos = TimeChaos(
        metadata={"name": "bad"},
        spec=TimeChaosSpec(mode="one", selector=PodSelectorSpec(), time_offset="1h", clock_ids=["CLOCK_X"]),
    )
    assert [issue.where() for issue in validate_object(chaos, namespace="default")] == ["spec.clockIds[0]"]
