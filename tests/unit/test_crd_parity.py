"""Schema parity: the CRDs faultmesh generates accept every field Chaos Mesh's CRDs accept.

For each reference CRD, every property path must exist in ours with the same type, format,
enum, bounds and required list, so a manifest valid for Chaos Mesh is valid for faultmesh and
the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from faultmesh.api.crd import crd_for
from faultmesh.api.registry import kinds

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "chaos-mesh" / "crd"
REFERENCE_FILES = sorted(REFERENCE.glob("*.yaml"))


def _reference(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def compare(ref: dict[str, Any], ours: dict[str, Any], path: str, problems: list[str]) -> None:
    if ref.get("x-kubernetes-preserve-unknown-fields") and not ours.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: reference keeps unknown fields, ours does not")
    if ref.get("x-kubernetes-int-or-string"):
        if not ours.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: reference is int-or-string, ours is {ours.get('type')}")
        return
    if ref.get("type") != ours.get("type"):
        problems.append(f"{path}: type {ref.get('type')} in reference, {ours.get('type')} in ours")
        return
    for key in ("format", "minimum", "maximum", "nullable", "x-kubernetes-list-type",
                "x-kubernetes-list-map-keys", "x-kubernetes-map-type"):
        if key in ref and ref[key] != ours.get(key):
            problems.append(f"{path}: {key} {ref[key]!r} in reference, {ours.get(key)!r} in ours")
    if sorted(map(str, ref.get("enum", []))) != sorted(map(str, ours.get("enum", []))):
        problems.append(f"{path}: enum {ref.get('enum')} in reference, {ours.get('enum')} in ours")
    if sorted(ref.get("required", [])) != sorted(ours.get("required", [])):
        problems.append(
            f"{path}: required {sorted(ref.get('required', []))} in reference, "
            f"{sorted(ours.get('required', []))} in ours"
        )
    ours_properties = ours.get("properties", {})
    for name, child in ref.get("properties", {}).items():
        if name not in ours_properties:
            problems.append(f"{path}.{name}: missing in ours")
            continue
        if path == "" and name == "metadata":
            continue
        compare(child, ours_properties[name], f"{path}.{name}" if path else name, problems)
    if isinstance(ref.get("additionalProperties"), dict):
        theirs = ours.get("additionalProperties")
        if not isinstance(theirs, dict):
            problems.append(f"{path}: reference has additionalProperties, ours has none")
        else:
            compare(ref["additionalProperties"], theirs, f"{path}{{*}}", problems)
    if "items" in ref:
        if "items" not in ours:
            problems.append(f"{path}: reference has items, ours has none")
        else:
            compare(ref["items"], ours["items"], f"{path}[*]", problems)


def test_every_reference_crd_is_present() -> None:
    assert len(REFERENCE_FILES) == 23
    ours = {cls.crd.plural for cls in kinds().values()}
    theirs = {_reference(path)["spec"]["names"]["plural"] for path in REFERENCE_FILES}
    assert sorted(theirs - ours) == []


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda path: path.stem.split("_")[-1])
def test_schema_parity(path: Path) -> None:
    reference = _reference(path)
    kind = reference["spec"]["names"]["kind"]
    cls = kinds().get(kind)
    assert cls is not None, f"{kind} has no model"
    ours = crd_for(cls)
    assert ours["metadata"]["name"] == reference["metadata"]["name"]
    assert ours["spec"]["scope"] == reference["spec"]["scope"]
    assert ours["spec"]["names"] == reference["spec"]["names"]
    ref_version = reference["spec"]["versions"][0]
    our_version = ours["spec"]["versions"][0]
    # Chaos Mesh's experiments carry `subresources: {}` (no status subresource); keep it exact.
    assert our_version.get("subresources") == ref_version.get("subresources")
    ref_columns = [(c["name"], c["jsonPath"], c["type"]) for c in ref_version.get("additionalPrinterColumns", [])]
    our_columns = [(c["name"], c["jsonPath"], c["type"]) for c in our_version.get("additionalPrinterColumns", [])]
    assert our_columns == ref_columns
    problems: list[str] = []
    compare(ref_version["schema"]["openAPIV3Schema"], our_version["schema"]["openAPIV3Schema"], "", problems)
    assert problems == [], "\n".join(problems)
