"""Manifest text (multi-document YAML or JSON) → validated, defaulted models.

Every problem comes back as a :class:`ManifestProblem` naming the document, the field path
and, where the text is known, the line -- never an exception from a library. Objects of other
API groups in the same file are passed over with a note, as ``kubectl apply`` users expect
from a file that also holds the Deployment under test.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .admission import admit_create
from .base import API_GROUP, Issue, Path, Resource, format_path, suggest
from .registry import kinds

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class ManifestProblem:
    """One reason a manifest was refused."""

    message: str
    path: Path = ()
    doc: int | None = None
    line: int | None = None
    source: str | None = None

    def __str__(self) -> str:
        # Compiler style, so editors can jump to it: "file.yaml:12: doc 2 spec.mode: ...".
        parts = []
        if self.source:
            parts.append(f"{self.source}:{self.line}:" if self.line else f"{self.source}:")
        if self.doc is not None:
            parts.append(f"doc {self.doc}")
        field_path = format_path(self.path)
        parts.append(f"{field_path}: {self.message}" if field_path else self.message)
        return " ".join(parts)


class ManifestError(Exception):
    """Raised when a manifest has problems; ``problems`` lists them all."""

    def __init__(self, problems: list[ManifestProblem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass
class LoadResult:
    objects: list[Resource] = field(default_factory=list)
    #: Human notes about what was passed over (other API groups, empty documents).
    notes: list[str] = field(default_factory=list)


def load_text(text: str, source: str | None = None, namespace: str = DEFAULT_NAMESPACE) -> LoadResult:
    """Load every ``chaos-mesh.org`` object in ``text``; raise :class:`ManifestError` on any problem.

    ``namespace`` stands in for an object's namespace when its metadata names none, as the
    current context's namespace does for ``kubectl apply``.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        documents = list(yaml.load_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise ManifestError([_yaml_problem(error, source)]) from None

    result = LoadResult()
    problems: list[ManifestProblem] = []
    for number, (node, data) in enumerate(zip(nodes, documents, strict=True), start=1):
        for item_path, item in _expand_lists(data):
            doc_problems, obj, note = _load_document(item, number, namespace)
            if note:
                result.notes.append(note)
            for problem in doc_problems:
                full_path = (*item_path, *problem.path)
                line = _line_of(node, full_path)
                problems.append(
                    ManifestProblem(problem.message, full_path, number, line, source)
                )
            if obj is not None:
                result.objects.append(obj)
    if problems:
        raise ManifestError(problems)
    return result


def parse_object(data: Any, namespace: str = DEFAULT_NAMESPACE) -> Resource:
    """One object (a dict as a Kubernetes client returns it) → validated, defaulted model."""
    problems, obj, note = _load_document(data, None, namespace)
    if problems:
        raise ManifestError(problems)
    if obj is None:
        raise ManifestError([ManifestProblem(note or "not a chaos-mesh.org object")])
    return obj


def validate_object(obj: Resource, namespace: str | None = None) -> list[Issue]:
    """Default and check a model built in code; return the issues (empty when valid)."""
    return admit_create(obj, namespace)


def _expand_lists(data: Any) -> list[tuple[Path, Any]]:
    # `kubectl get -o yaml` prints a List; its items are the objects.
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        return [(("items", index), item) for index, item in enumerate(data["items"])]
    return [((), data)]


def _load_document(
    data: Any, doc: int | None, namespace: str
) -> tuple[list[ManifestProblem], Resource | None, str | None]:
    where = f"doc {doc}" if doc is not None else "object"
    if data is None:
        return [], None, None
    if not isinstance(data, dict):
        kind_of = type(data).__name__
        return [ManifestProblem(f"expected a Kubernetes object (a mapping), got a {kind_of}", doc=doc)], None, None
    api_version = data.get("apiVersion")
    kind_name = data.get("kind")
    if not isinstance(api_version, str) or not api_version:
        return [ManifestProblem("is required", ("apiVersion",), doc)], None, None
    if not isinstance(kind_name, str) or not kind_name:
        return [ManifestProblem("is required", ("kind",), doc)], None, None
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if group != API_GROUP:
        return [], None, f"{where}: passed over {kind_name} ({api_version}): not a {API_GROUP} object"
    table = kinds()
    cls = table.get(kind_name)
    if cls is None:
        hint = suggest(kind_name, table)
        return [ManifestProblem(f'"{kind_name}" is not a {API_GROUP} kind{hint}', ("kind",), doc)], None, None
    try:
        # A manifest speaks the wire names only; Python names are for SDK code.
        obj = cls.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as error:
        return [_pydantic_problem(cls, item, doc) for item in error.errors()], None, None
    if not obj.metadata.namespace and cls.crd.scope == "Namespaced":
        obj.metadata.namespace = namespace
    issues = validate_object(obj)
    return [ManifestProblem(issue.message, issue.path, doc) for issue in issues], (None if issues else obj), None


def _yaml_problem(error: yaml.YAMLError, source: str | None) -> ManifestProblem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    line = mark.line + 1 if mark is not None else None
    column = f", column {mark.column + 1}" if mark is not None else ""
    return ManifestProblem(f"malformed YAML{column}: {problem}", line=line, source=source)


def _pydantic_problem(cls: type[BaseModel], error: Any, doc: int | None) -> ManifestProblem:
    path = _clean_loc(cls, tuple(error["loc"]))
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(cls, path[:-1])
        names = _aliases(parent) if parent else []
        hint = suggest(str(path[-1]), names)
        return ManifestProblem(f"unknown field{hint}", path, doc)
    if kind == "missing":
        return ManifestProblem("is required", path, doc)
    if kind in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        return ManifestProblem(f"{_show(value)} is not one of {expected}", path, doc)
    if kind.endswith("_type") or kind.endswith("_parsing"):
        wanted = kind.split("_")[0].replace("dict", "mapping").replace("model", "mapping")
        wanted = {"int": "an integer", "float": "a number", "bool": "a boolean", "string": "a string",
                  "list": "a list", "mapping": "a mapping"}.get(wanted, wanted)
        return ManifestProblem(f"{_show(value)} is not {wanted}", path, doc)
    if kind.startswith(("greater_than", "less_than")):
        return ManifestProblem(f"{_show(value)} {error['msg'].lower().removeprefix('input ')}", path, doc)
    return ManifestProblem(error["msg"].removeprefix("Value error, "), path, doc)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes and containers an annotation can hold, Optional and Annotated peeled."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                found.extend(_unwrap(arg))
        return found
    return [annotation]


def _step(annotation: Any, part: str | int) -> Any | None:
    """The annotation one loc step below ``annotation``, or None if the step is not a field."""
    for candidate in _unwrap(annotation):
        origin = typing.get_origin(candidate)
        if origin in (list, tuple) and isinstance(part, int):
            return typing.get_args(candidate)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(candidate)[1]
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(part, str):
            for name, info in candidate.model_fields.items():
                if part in (info.alias, name):
                    return info.annotation
    return None


def _clean_loc(cls: type[BaseModel], loc: tuple[Any, ...]) -> Path:
    """Drop pydantic's union and validator tags from a loc, keeping the wire field names."""
    path: list[str | int] = []
    current: Any = cls
    for part in loc:
        following = _step(current, part)
        if following is None:
            if isinstance(part, str) and ("[" in part or part[:1].isupper()):
                continue  # a union member tag such as "PodChaosSpec" or "function-after[...]"
            path.append(part)
            current = Any
            continue
        path.append(part)
        current = following
    return tuple(path)


def _model_at(cls: type[BaseModel], path: Path) -> type[BaseModel] | None:
    current: Any = cls
    for part in path:
        current = _step(current, part)
        if current is None:
            return None
    for candidate in _unwrap(current):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _line_of(node: yaml.Node | None, path: Path) -> int | None:
    """The 1-based line of the deepest node of ``path`` found in the YAML tree."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    current: yaml.Node = node
    for part in path:
        following: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            for key, value in current.value:
                if key.value == part:
                    following = value
                    break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(current.value):
            following = current.value[part]
        if following is None:
            break
        current = following
        line = current.start_mark.line + 1
    return line
