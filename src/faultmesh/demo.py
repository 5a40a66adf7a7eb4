"""``make demo``: what faultmesh can show on a machine with nothing set up.

Host mode (faults run on this machine) is not built yet. Until it is, the demo does the part
that exists, honestly: it validates every bundled example manifest, plans each one against a
small example cluster (which pods and containers it would hit), shows that a broken manifest
is refused with the field named, and injects nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .api.loader import ManifestError, load_text
from .planview import print_plan
from .selection import load_inventory, plan_experiment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLUSTER = "cluster.yaml"

BROKEN = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: typo, namespace: shop}
spec:
  action: delay
  mode: fixed
  value: "0"
  direction: both
  delay: {latency: 10x}
  selector: {labelSelectors: {app: web}}
"""


def run(console: Console, examples: Path = EXAMPLES) -> int:
    inventory_path = examples / CLUSTER
    inventory = load_inventory(inventory_path.read_text(encoding="utf-8"), source=str(inventory_path))
    console.rule("[bold]faultmesh demo[/bold]")
    console.print(
        f"Example cluster [cyan]{escape(str(inventory_path))}[/cyan]: "
        f"{len(inventory.pods)} pods, {len(inventory.nodes or ())} nodes, "
        f"{len(inventory.namespaces or ())} namespaces."
    )
    summary = Table(title="Bundled experiments", title_justify="left")
    for column in ("manifest", "kind", "valid", "targets (seed 1)"):
        summary.add_column(column)
    failures = 0
    for path in sorted(examples.glob("*.yaml")):
        if path.name == CLUSTER:
            continue
        try:
            objects = load_text(path.read_text(encoding="utf-8"), source=path.name).objects
        except ManifestError as error:
            failures += 1
            summary.add_row(path.name, "?", "[red]no[/red]", escape(str(error)))
            continue
        for obj in objects:
            plans = plan_experiment(obj, inventory, seed=1)
            chosen = sum(len(p.selection.containers) or len(p.selection.pods) for p in plans)
            summary.add_row(path.name, obj.kind, "[green]yes[/green]", str(chosen))
            print_plan(console, obj, plans)
    console.print(summary)
    console.rule("A broken manifest is refused, every problem named")
    try:
        load_text(BROKEN, source="broken.yaml")
    except ManifestError as error:
        for problem in error.problems:
            console.print(f"[red]✗[/red] {escape(str(problem))}", highlight=False)
    console.rule()
    console.print(
        "[bold yellow]Host mode is not built yet[/bold yellow]: this demo validated and planned the "
        "examples and injected nothing. When host mode lands, `make demo` runs these faults on "
        "this machine and measures their effect."
    )
    return 1 if failures else 0


def main() -> None:
    sys.exit(run(Console(soft_wrap=False)))


if __name__ == "__main__":
    main()
