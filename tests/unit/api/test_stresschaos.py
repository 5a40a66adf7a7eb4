"""StressChaos: stressors, their bounds, the memory size grammar and the SDK round trip."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.base import format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.loader import ManifestError, load_text, validate_object
from faultmesh.api.stresschaos import (
    CPUStressor,
    MemorySize,
    MemoryStressor,
    StressChaos,
    StressChaosSpec,
    Stressors,
    parse_memory_size,
)


def manifest(**spec: Any) -> str:
    body = {"mode": "one", "selector": {"labelSelectors": {"app": "tikv"}}, **spec}
    return yaml.safe_dump(
        {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "StressChaos",
            "metadata": {"name": "s"},
            "spec": body,
        }
    )


def load_one(text: str) -> StressChaos:
    obj = load_text(text).objects[0]
    assert isinstance(obj, StressChaos)
    return obj


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


# --- defaults and valid specs -----------------------------------------------------------------


def test_oom_score_adj_defaults_to_zero_and_load_stays_unset() -> None:
    spec = load_one(manifest(stressors={"memory": {"workers": 1}, "cpu": {"workers": 2}})).spec
    assert spec.stressors is not None
    assert spec.stressors.memory is not None and spec.stressors.memory.oom_score_adj == 0
    assert spec.stressors.cpu is not None and spec.stressors.cpu.load is None
    assert spec.selector.namespaces == ["default"]


@pytest.mark.parametrize(
    "spec",
    [
        {"stressors": {"cpu": {"workers": 1, "load": 0}}},
        {"stressors": {"cpu": {"workers": 8192, "load": 100, "options": ["--cpu-method", "sqrt"]}}},
        {"stressors": {"memory": {"workers": 1, "size": "256MB", "oomScoreAdj": -1000}}},
        {"stressors": {"memory": {"workers": 1, "size": "50%", "oomScoreAdj": 1000}}},
        {"stressors": {"memory": {"workers": 1, "size": ""}}},
        {"stressngStressors": "--cpu 2 --vm 1 --vm-bytes 1G"},
        {"stressngStressors": "--cpu 1", "stressors": {"cpu": {"workers": 1}}},
    ],
)
def test_valid_specs_load(spec: dict[str, Any]) -> None:
    load_one(manifest(**spec))


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({}, "spec.stressors", "is required unless stressngStressors is given"),
        ({"stressngStressors": "   "}, "spec.stressors", "is required unless stressngStressors"),
        ({"stressors": {}}, "spec.stressors", "needs at least one stressor"),
        ({"stressors": {"cpu": {"load": 10}}}, "spec.stressors.cpu.workers", "is required"),
        ({"stressors": {"cpu": {"workers": 0}}}, "spec.stressors.cpu.workers", "0 must be at least 1"),
        ({"stressors": {"memory": {"workers": -3}}}, "spec.stressors.memory.workers", "must be at least 1"),
        (
            {"stressors": {"cpu": {"workers": 8193}}},
            "spec.stressors.cpu.workers",
            "less than or equal to 8192",
        ),
        (
            {"stressors": {"cpu": {"workers": 1, "load": -1}}},
            "spec.stressors.cpu.load",
            "greater than or equal to 0",
        ),
        (
            {"stressors": {"cpu": {"workers": 1, "load": 101}}},
            "spec.stressors.cpu.load",
            "less than or equal to 100",
        ),
        (
            {"stressors": {"memory": {"workers": 1, "size": "1 gigabyte"}}},
            "spec.stressors.memory.size",
            "not a unit",
        ),
        (
            {"stressors": {"memory": {"workers": 1, "size": "101%"}}},
            "spec.stressors.memory.size",
            "in 0..100",
        ),
        (
            {"stressors": {"memory": {"workers": 1, "size": "2.5%"}}},
            "spec.stressors.memory.size",
            "whole number",
        ),
        (
            {"stressors": {"memory": {"workers": 1, "size": "-1GB"}}},
            "spec.stressors.memory.size",
            "not a memory",
        ),
        (
            {"stressors": {"memory": {"workers": 1, "oomScoreAdj": 1001}}},
            "spec.stressors.memory.oomScoreAdj",
            "less than or equal to 1000",
        ),
        ({"stressors": {"disk": {"workers": 1}}}, "spec.stressors.disk", "unknown field"),
        ({"stressors": {"cpu": {"workers": 1}}, "duration": "30"}, "spec.duration", "is not a duration"),
    ],
)
def test_rule_refuses_with_field_path(spec: dict[str, Any], path: str, message: str) -> None:
    found = problems(manifest(**spec))
    assert path in found, found
    assert message in found[path]


def test_a_missing_spec_is_refused() -> None:
    text = "apiVersion: chaos-mesh.org/v1alpha1\nkind: StressChaos\nmetadata: {name: bare}\n"
    assert problems(text) == {"spec": "is required"}


# --- the memory size grammar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", MemorySize(0)),
        ("100", MemorySize(100)),
        ("100b", MemorySize(100)),
        ("256MB", MemorySize(256_000_000)),
        ("256mb", MemorySize(256_000_000)),
        ("256M", MemorySize(256_000_000)),
        ("1GB", MemorySize(10**9)),
        ("1GiB", MemorySize(2**30)),
        ("1gib", MemorySize(2**30)),
        ("1.5KiB", MemorySize(1536)),
        ("1 GB", MemorySize(10**9)),
        ("1 ", MemorySize(1)),
        (".5kb", MemorySize(500)),
        ("1.kb", MemorySize(1000)),
        ("1e3", MemorySize(1000)),
        ("2PiB", MemorySize(2 * 2**50)),
        ("1.9", MemorySize(1)),
        ("50%", MemorySize(50, is_percent=True)),
        ("0%", MemorySize(0, is_percent=True)),
        ("100%", MemorySize(100, is_percent=True)),
    ],
)
def test_memory_sizes_parse_as_chaos_mesh_accepts_them(text: str, size: MemorySize) -> None:
    assert parse_memory_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        "",
        "GB",
        "1Mi",
        "1 MiBs",
        "1EB",
        "1  GB",
        " 1GB",
        "-1GB",
        "1,000",
        "1_000",
        "inf",
        "nan",
        "1.2.3MB",
        "101%",
        "-1%",
        "1.5%",
        "%",
        "1e99",
        "10000PB",
        "0x10",
    ],
)
def test_malformed_memory_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory_size(text)


def test_percent_resolves_against_the_total() -> None:
    assert parse_memory_size("50%").bytes_of(8 * 2**30) == 4 * 2**30
    assert parse_memory_size("1GiB").bytes_of(123) == 2**30


units = st.sampled_from(
    [
        ("", 1),
        ("b", 1),
        ("k", 10**3),
        ("kb", 10**3),
        ("kib", 2**10),
        ("m", 10**6),
        ("mb", 10**6),
        ("mib", 2**20),
        ("g", 10**9),
        ("gb", 10**9),
        ("gib", 2**30),
        ("t", 10**12),
        ("tib", 2**40),
    ]
)


@given(st.integers(min_value=0, max_value=10**6), units, st.booleans(), st.booleans())
def test_whole_sizes_are_number_times_unit_in_any_case(
    number: int, unit: tuple[str, int], upper: bool, space: bool
) -> None:
    suffix, multiplier = unit
    text = f"{number}{' ' if space else ''}{suffix.upper() if upper else suffix}"
    assert parse_memory_size(text) == MemorySize(number * multiplier)


@given(st.integers(min_value=0, max_value=10**4), st.integers(min_value=0, max_value=999), units)
def test_fractional_sizes_truncate_to_whole_bytes(
    whole: int, thousandths: int, unit: tuple[str, int]
) -> None:
    suffix, multiplier = unit
    expected = (whole * 1000 + thousandths) * multiplier // 1000
    assert parse_memory_size(f"{whole}.{thousandths:03d}{suffix}").amount == expected


@given(st.integers(min_value=-1000, max_value=1000), st.integers(min_value=0, max_value=2**40))
def test_percents_are_whole_and_bounded(percent: int, total: int) -> None:
    text = f"{percent}%"
    if 0 <= percent <= 100:
        size = parse_memory_size(text)
        assert size == MemorySize(percent, is_percent=True)
        assert 0 <= size.bytes_of(total) <= total
    else:
        with pytest.raises(ValueError):
            parse_memory_size(text)


@given(st.text(max_size=12))
def test_the_parser_never_fails_other_than_with_value_error(text: str) -> None:
    try:
        size = parse_memory_size(text)
    except ValueError:
        return
    assert 0 <= size.amount <= 2**63 - 1


# --- SDK --------------------------------------------------------------------------------------


def test_sdk_round_trip() -> None:
    chaos = StressChaos(
        metadata={"name": "burn", "namespace": "tikv"},
        spec=StressChaosSpec(
            mode="all",
            selector=PodSelectorSpec(label_selectors={"app.kubernetes.io/component": "tikv"}),
            stressors=Stressors(
                cpu=CPUStressor(workers=2, load=80, options=["--cpu-method", "sqrt"]),
                memory=MemoryStressor(workers=1, size="1GiB", oom_score_adj=-500),
            ),
            duration="30s",
        ),
    )
    assert validate_object(chaos) == []
    data = chaos.to_dict()
    assert data["spec"]["stressors"] == {
        "memory": {"workers": 1, "size": "1GiB", "oomScoreAdj": -500},
        "cpu": {"workers": 2, "load": 80, "options": ["--cpu-method", "sqrt"]},
    }
    again = load_one(yaml.safe_dump(data))
    assert again.to_dict() == data


def test_sdk_object_reports_rule_issues_with_paths() -> None:
    chaos = StressChaos(
        metadata={"name": "nothing"},
        spec=StressChaosSpec(
            mode="one", selector=PodSelectorSpec(), stressors=Stressors(cpu=CPUStressor(workers=0))
        ),
    )
    issues = [issue.where() for issue in validate_object(chaos, namespace="default")]
    assert issues == ["spec.stressors.cpu.workers"]
