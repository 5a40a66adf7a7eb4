"""Rendering ``faultmesh plan``: which pods and containers each experiment would hit.

Planning itself is pure (:func:`faultmesh.selection.plan_experiment`); this module only turns
its answer into a rich table or plain data (JSON/YAML) for scripts.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .api.base import Resource
from .selection import SelectorPlan


def plan_rows(obj: Resource, plans: list[SelectorPlan]) -> dict[str, Any]:
    """One experiment's plan as plain data (what ``--output json`` prints)."""
    return {
        "kind": obj.kind,
        "namespace": obj.metadata.namespace,
        "name": obj.metadata.name,
        "selectors": [
            {
                "path": plan.where,
                "matched": len(plan.selection.matched),
                "mode": plan.selection.explanation,
                "pods": [pod.key for pod in plan.selection.pods],
                "containers": [
                    {"id": target.id, "containerID": target.container_id}
                    for target in plan.selection.containers
                ],
                "reason": plan.selection.reason,
                "notes": list(plan.selection.notes),
            }
            for plan in plans
        ],
    }


def print_plan(console: Console, obj: Resource, plans: list[SelectorPlan]) -> None:
    """A table per experiment: one row per selector, the chosen targets listed."""
    title = f"{obj.kind} {obj.metadata.namespace}/{obj.metadata.name}"
    if not plans:
        console.print(f"[bold]{escape(title)}[/bold]: selects no pods (its targets are not pods)")
        return
    table = Table(title=escape(title), title_justify="left", show_lines=True)
    table.add_column("selector")
    table.add_column("matched", justify="right")
    table.add_column("chosen")
    table.add_column("targets")
    for plan in plans:
        selection = plan.selection
        if selection.empty:
            chosen = f"[yellow]none[/yellow]: {escape(selection.reason or '')}"
            targets = ""
        else:
            chosen = escape(selection.explanation)
            if selection.selects_containers:
                targets = "\n".join(escape(target.id) for target in selection.containers)
            else:
                targets = "\n".join(escape(pod.key) for pod in selection.pods)
        notes = "\n".join(f"[dim]{escape(note)}[/dim]" for note in selection.notes)
        cell = targets + ("\n" + notes if notes else "")
        table.add_row(escape(plan.where), str(len(selection.matched)), chosen, cell)
    console.print(table)
