"""The base every faultmesh API model stands on.

Models mirror Chaos Mesh's Go types: camelCase aliases on the wire, unknown fields refused,
``omitempty`` fields optional (``None`` when absent, so a dump carries only what is set or
defaulted). Checks that need more than one field -- Chaos Mesh's ``Validate(root, path)``
webhook methods -- are written as ``rules`` generators, walked over the whole object by
:func:`check`, so every problem comes back with the field path it belongs to.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "chaos-mesh.org"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True)
class Issue:
    """One problem with a manifest, tied to the field it concerns."""

    path: Path
    message: str

    def where(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


def format_path(path: Path) -> str:
    """``("spec", "containerNames", 0)`` → ``spec.containerNames[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = part
    return text


def quote(value: Any) -> str:
    """Show a user's value the way they wrote it in YAML."""
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def suggest(word: str, choices: Iterable[str]) -> str:
    """A ``; did you mean "x"?`` hint for a misspelt name, or nothing."""
    options = [str(choice) for choice in choices]
    matches = [option for option in options if option.lower() == word.lower()][:1]
    if not matches:
        matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f'; did you mean "{matches[0]}"?' if matches else ""


def not_one_of(value: str, what: str, choices: Iterable[str]) -> str:
    """The message for a name outside a closed list: a near miss is named, else the list."""
    options = list(choices)
    hint = suggest(value, options) or f" (one of {', '.join(options)})"
    return f"{quote(value)} is not {what}{hint}"


@dataclass
class RuleContext:
    """What a rule may look at besides its own model: the whole object, and its namespace."""

    root: Any
    namespace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Model(BaseModel):
    """Base of every spec/status model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        validate_default=False,
        use_enum_values=True,
    )

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        """Cross-field checks of this model, paths relative to it. Override in subclasses."""
        return iter(())

    def apply_defaults(self, ctx: RuleContext) -> None:
        """Context-dependent defaults (those a plain field default cannot express)."""

    def to_dict(self) -> dict[str, Any]:
        """The wire form: aliases, no unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def context_for(model: Model, namespace: str | None = None) -> RuleContext:
    """The context for checking or defaulting ``model``: its own namespace unless given."""
    if namespace is None and isinstance(model, Resource):
        namespace = model.metadata.namespace
    return RuleContext(root=model, namespace=namespace)


def _children(value: Any, path: Path) -> Iterator[tuple[Model, Path]]:
    if isinstance(value, Model):
        yield value, path
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _children(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _children(item, (*path, str(key)))


def walk(model: Model, path: Path = ()) -> Iterator[tuple[Model, Path]]:
    """Every model inside ``model`` (itself first), with its path."""
    yield model, path
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        alias = info.alias or name
        for child, child_path in _children(value, (*path, alias)):
            yield from walk(child, child_path)


def check(model: Model, ctx: RuleContext | None = None) -> list[Issue]:
    """Run every model's ``rules`` over the tree; return all issues with absolute paths."""
    ctx = ctx or context_for(model)
    issues: list[Issue] = []
    for node, path in walk(model):
        for issue in node.rules(ctx):
            issues.append(Issue((*path, *issue.path), issue.message))
    return issues


def default(model: Model, ctx: RuleContext | None = None) -> None:
    """Apply every model's context-dependent defaults, outermost first."""
    ctx = ctx or context_for(model)
    for node, _ in list(walk(model)):
        node.apply_defaults(ctx)


@dataclass(frozen=True)
class CrdInfo:
    """How a top-level kind is published as a CustomResourceDefinition."""

    plural: str
    scope: str = "Namespaced"
    short_names: tuple[str, ...] = ()
    status_subresource: bool = True
    #: Without a status subresource, still publish ``subresources: {}`` (status written with the
    #: object), as Chaos Mesh's experiment CRDs do.
    empty_subresources: bool = False
    #: (column name, JSON path, type, description)
    printer_columns: tuple[tuple[str, str, str, str], ...] = ()


class ObjectMeta(BaseModel):
    """The part of Kubernetes' ObjectMeta that faultmesh reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    finalizers: list[str] | None = None


class Resource(Model):
    """A top-level ``chaos-mesh.org/v1alpha1`` object: apiVersion, kind, metadata, spec."""

    crd: ClassVar[CrdInfo]
    #: Whether the object is an experiment whose spec may not change once created.
    immutable_spec: ClassVar[bool] = False

    api_version: str = GROUP_VERSION
    kind: str = ""
    metadata: ObjectMeta = ObjectMeta()

    @model_validator(mode="before")
    @classmethod
    def _fill_kind(cls, data: Any) -> Any:
        # An SDK user need not repeat the kind the class already names.
        if isinstance(data, dict) and not data.get("kind"):
            data = {**data, "kind": cls.kind_name()}
        return data

    @classmethod
    def kind_name(cls) -> str:
        return cls.__name__

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.api_version != GROUP_VERSION:
            yield Issue(("apiVersion",), f"{quote(self.api_version)} is not {GROUP_VERSION}")
        if self.kind != self.kind_name():
            yield Issue(("kind",), f"{quote(self.kind)} is not {self.kind_name()}")
        if not (self.metadata.name or self.metadata.generate_name):
            yield Issue(("metadata", "name"), "is required")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        # Kubernetes objects conventionally start with apiVersion, kind, metadata.
        ordered: dict[str, Any] = {key: data.pop(key) for key in ("apiVersion", "kind", "metadata") if key in data}
        ordered.update(data)
        return ordered
