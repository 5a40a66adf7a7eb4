"""DNSChaos: schema, the domain pattern grammar of Chaos Mesh's DNS server, and SDK use."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.common import PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.dnschaos import DNSChaos, DNSChaosSpec, pattern_issues
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object


def _dns(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "DNSChaos",
        "metadata": {"name": "dns", "namespace": "busybox"},
        "spec": {"action": "error", "mode": "all", "selector": {}, **spec},
    }


def _load(spec: dict[str, Any]) -> DNSChaos:
    obj = parse_object(_dns(spec))
    assert isinstance(obj, DNSChaos)
    return obj


def _problems(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(_dns(spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def test_crd_names_the_patterns_field_and_action_enum() -> None:
    version = crd_for(DNSChaos)["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["patterns"]["items"] == {"type": "string"}
    assert spec["properties"]["action"]["enum"] == ["error", "random"]
    assert sorted(spec["required"]) == ["action", "mode", "selector"]
    assert [column["name"] for column in version["additionalPrinterColumns"]] == ["action", "duration"]


def test_defaults() -> None:
    chaos = _load({})
    assert chaos.spec.selector.namespaces == ["busybox"]
    assert chaos.spec.patterns is None
    assert chaos.spec.container_names is None


@pytest.mark.parametrize("action", ["error", "random"])
def test_actions(action: str) -> None:
    assert _load({"action": action}).spec.action == action


@pytest.mark.parametrize("action", ["Error", "timeout", ""])
def test_unknown_actions_are_refused(action: str) -> None:
    assert "is not one of 'error' or 'random'" in _problems({"action": action})["spec.action"]


def test_action_is_required() -> None:
    data = _dns({})
    del data["spec"]["action"]
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    assert [format_path(problem.path) for problem in caught.value.problems] == ["spec.action"]


@pytest.mark.parametrize(
    "patterns",
    [
        ["google.com", "chaos-mesh.*", "github.?om"],
        ["*"],
        ["16?.co*"],
        ["[a-c]hub.com", "[!0-9].org"],
        ["[*]x.com"],  # inside a set, * is a literal character
        ["a.org", "a.org*"],
    ],
)
def test_good_patterns_are_accepted(patterns: list[str]) -> None:
    assert _load({"patterns": patterns}).spec.patterns == patterns


def test_an_empty_pattern_list_hits_every_name() -> None:
    assert _load({"patterns": []}).spec.patterns == []


@pytest.mark.parametrize(
    ("patterns", "index", "message"),
    [
        (["chaos-*.org"], 0, "the wildcard * may only be the last character"),
        (["ok.com", "**"], 1, "the wildcard * may only be the last character"),
        (["ok.com", ""], 1, "is empty"),
        (["my host.com"], 0, "contains white space"),
        (["a.com", "a.com"], 1, 'repeats patterns[0] "a.com"'),
        (["a.com", "a.com."], 1, 'repeats patterns[0] "a.com"'),
        (["a.com.", "a.com"], 1, 'repeats patterns[0] "a.com."'),
        (["b.*", "b.*"], 1, "repeats patterns[0]"),
    ],
)
def test_bad_patterns_are_refused_at_their_index(patterns: list[str], index: int, message: str) -> None:
    problems = _problems({"patterns": patterns})
    assert list(problems) == [f"spec.patterns[{index}]"]
    assert message in problems[f"spec.patterns[{index}]"]


@given(st.lists(st.from_regex(r"[a-z0-9.?-]{1,12}\*?", fullmatch=True), max_size=6, unique=True))
def test_distinct_patterns_with_a_trailing_star_only_pass(patterns: list[str]) -> None:
    # Duplicates can still arise through the fully-qualified form ("a" and "a."); allow only those.
    issues = list(pattern_issues(patterns))
    for issue in issues:
        assert "repeats" in issue.message
        index = issue.path[0]
        assert isinstance(index, int)
        pattern = patterns[index]
        assert (pattern.endswith(".") and pattern[:-1] in patterns[:index]) or f"{pattern}." in patterns[:index]


@given(st.from_regex(r"[a-z]{1,5}\*[a-z.]{1,5}", fullmatch=True))
def test_any_star_before_the_end_is_refused(pattern: str) -> None:
    issues = list(pattern_issues([pattern]))
    assert len(issues) == 1 and "only be the last character" in issues[0].message


def test_mode_value_rule_applies() -> None:
    assert "must be greater than 0" in _problems({"mode": "fixed", "value": "0"})["spec.value"]


def test_bad_duration_is_refused() -> None:
    assert _problems({"duration": "50"}) == {"spec.duration": '"50" is not a duration (e.g. 100ms, 1.5s, 2h45m)'}


def test_sdk_round_trip() -> None:
    chaos = DNSChaos(
        metadata=ObjectMeta(name="dns-random", namespace="busybox"),
        spec=DNSChaosSpec(
            action="random",
            mode="all",
            selector=PodSelectorSpec(label_selectors={"app": "busybox"}),
            patterns=["google.com", "chaos-mesh.*"],
            container_names=["main"],
            duration="50s",
        ),
    )
    assert validate_object(chaos) == []
    data = chaos.to_dict()
    assert data["spec"]["patterns"] == ["google.com", "chaos-mesh.*"]
    assert data["spec"]["selector"]["namespaces"] == ["busybox"]
    again = load_text(yaml.safe_dump(data)).objects[0]
    assert isinstance(again, DNSChaos)
    assert again.to_dict() == data


def test_sdk_reports_pattern_problems_with_paths() -> None:
    chaos = DNSChaos(
        metadata=ObjectMeta(name="dns", namespace="busybox"),
        spec=DNSChaosSpec(action="error", mode="one", selector=PodSelectorSpec(), patterns=["x*y"]),
    )
    assert [issue.where() for issue in validate_object(chaos)] == ["spec.patterns[0]"]
