"""CustomResourceDefinitions generated from the models.

The models are the source of truth; their JSON schema (pydantic) is turned into the
structural OpenAPI v3 schema Kubernetes wants: ``$ref`` inlined, ``Optional`` dropped to its
type (absence, not null, is how Kubernetes says "unset"), free-form values marked
``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

from typing import Any

import yaml

from .base import API_GROUP, API_VERSION, Resource
from .registry import kinds

_KEEP = (
    "type", "format", "enum", "items", "properties", "required", "additionalProperties",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "description", "default",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "nullable",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
)


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {key: value for key, value in node.items() if key != "$ref"}
        node = {**target, **extra}
    return node


def _structural(node: Any, defs: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    if depth > 64:
        raise RecursionError("schema nests deeper than 64 levels; is a model recursive?")
    node = _resolve(node, defs)
    if not isinstance(node, dict):
        return {"x-kubernetes-preserve-unknown-fields": True}
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            options = [_resolve(option, defs) for option in node[combinator]]
            options = [option for option in options if option.get("type") != "null"]
            outer = {key: value for key, value in node.items() if key != combinator}
            if len(options) == 1:
                return _structural({**options[0], **outer}, defs, depth + 1)
            types = {option.get("type") for option in options}
            if types <= {"integer", "string"} and len(types) == 2:
                return _finish({**outer, "x-kubernetes-int-or-string": True}, defs, depth)
            return _finish({**outer, "x-kubernetes-preserve-unknown-fields": True}, defs, depth)
    if "allOf" in node and len(node["allOf"]) == 1:
        outer = {key: value for key, value in node.items() if key != "allOf"}
        return _structural({**_resolve(node["allOf"][0], defs), **outer}, defs, depth + 1)
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    return _finish(node, defs, depth)


def _finish(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {key: node[key] for key in _KEEP if key in node}
    if out.get("default") is None:
        out.pop("default", None)
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {
            name: _structural(child, defs, depth + 1) for name, child in node["properties"].items()
        }
        if not out["properties"]:
            del out["properties"]
    if isinstance(node.get("additionalProperties"), dict):
        out["type"] = "object"
        out["additionalProperties"] = _structural(node["additionalProperties"], defs, depth + 1)
    elif "additionalProperties" in node:
        del out["additionalProperties"]
        if node["additionalProperties"] is True and "properties" not in node:
            out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = _structural(node["items"], defs, depth + 1)
    if "enum" in node and "type" not in out:
        sample = node["enum"][0]
        out["type"] = "integer" if isinstance(sample, int) else "string"
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out.setdefault("x-kubernetes-preserve-unknown-fields", True)
    if not out.get("required"):
        out.pop("required", None)
    return out


def openapi_schema(cls: type[Resource]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one kind."""
    raw = cls.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(raw, defs)
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = {"type": "object"}
    schema.pop("x-kubernetes-preserve-unknown-fields", None)
    schema["type"] = "object"
    return schema


def crd_for(cls: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition object of one kind."""
    info = cls.crd
    kind = cls.kind_name()
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": info.plural,
        "singular": kind.lower(),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    version: dict[str, Any] = {
        "name": API_VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(cls)},
    }
    if info.printer_columns:
        version["additionalPrinterColumns"] = [
            {"name": name, "jsonPath": path, "type": kind_, "description": text}
            for name, path, kind_, text in info.printer_columns
        ]
    if info.status_subresource:
        version["subresources"] = {"status": {}}
    elif info.empty_subresources:
        version["subresources"] = {}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{API_GROUP}"},
        "spec": {"group": API_GROUP, "names": names, "scope": info.scope, "versions": [version]},
    }


def all_crds() -> list[dict[str, Any]]:
    return [crd_for(cls) for cls in kinds().values()]


def crds_yaml() -> str:
    return yaml.safe_dump_all(all_crds(), sort_keys=False, width=100)
