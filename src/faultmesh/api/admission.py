"""What Chaos Mesh's admission webhooks decide, as pure functions over models.

The controller's webhooks and ``faultmesh validate`` call these; neither re-implements them.
"""

from __future__ import annotations

from .base import Issue, Resource, check, context_for, default


def admit_create(obj: Resource, namespace: str | None = None) -> list[Issue]:
    """Default ``obj`` in place (the mutating webhook), then check it (the validating one)."""
    ctx = context_for(obj, namespace)
    default(obj, ctx)
    return check(obj, ctx)


def admit_update(old: Resource, new: Resource, namespace: str | None = None) -> list[Issue]:
    """An update: experiments (and PhysicalMachine) may not change their spec once created.

    Chaos Mesh compares the stored spec with the defaulted new one and refuses any difference;
    metadata (labels, the pause annotation) and status may change freely.
    """
    issues = admit_create(new, namespace)
    if type(new).immutable_spec and type(old) is type(new):
        old_spec = old.model_dump(by_alias=True, exclude_none=True).get("spec")
        new_spec = new.model_dump(by_alias=True, exclude_none=True).get("spec")
        if old_spec != new_spec:
            changed = sorted(_changed_fields(old_spec, new_spec))
            where = f" (changed: {', '.join(changed)})" if changed else ""
            issues.insert(
                0,
                Issue(
                    ("spec",),
                    f"the spec of a {new.kind_name()} cannot be updated once created{where};"
                    " delete it and create a new one",
                ),
            )
    return issues


def _changed_fields(old: object, new: object, prefix: str = "spec") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        changed: list[str] = []
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changed.extend(_changed_fields(old.get(key), new.get(key), f"{prefix}.{key}"))
        return changed
    return [prefix] if old != new else []
