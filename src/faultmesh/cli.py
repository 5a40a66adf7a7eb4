"""The ``faultmesh`` command.

Exit codes: 0 success, 2 the input was refused (bad manifest, bad option), 1 anything else.
No command prints a traceback for a user's mistake.
"""

from __future__ import annotations

import importlib
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
import yaml
from rich.console import Console
from rich.markup import escape
from typer._click.core import Command as ClickCommand  # the click typer ships and its groups use
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from . import __version__
from .api.loader import DEFAULT_NAMESPACE, LoadResult, ManifestError
from .files import read_manifest

EXIT_INVALID = 2

#: Commands whose modules are heavy to import (an HTTP server, the Kubernetes client, SQLAlchemy, matplotlib):
#: loaded only when used, so `faultmesh run` and friends start fast. Name → (module, function), in help order.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "get": ("faultmesh.host.views", "get_command"),
    "describe": ("faultmesh.host.views", "describe_command"),
    "report": ("faultmesh.host.report", "report_command"),
    "serve": ("faultmesh.host.server", "serve_command"),
    "controller": ("faultmesh.controller.main", "controller_command"),
}


class LazyGroup(TyperGroup):
    """A command group that imports a lazy command's module only when that command is looked up."""

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in LAZY_COMMANDS if name not in self.commands)]

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = LAZY_COMMANDS[cmd_name]
            function = getattr(importlib.import_module(module), attribute)
            single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
            single.command(cmd_name)(function)
            command = typer.main.get_command(single)
            command.name = cmd_name
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=LazyGroup,
    name="faultmesh",
    help="Chaos engineering for Kubernetes and single hosts; runs Chaos Mesh manifests unchanged.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

NamespaceOption = Annotated[
    str,
    typer.Option("--namespace", "-n", help="Namespace for objects whose metadata names none."),
]


def _read_manifests(files: list[Path], namespace: str) -> tuple[list[tuple[Path, LoadResult]], bool]:
    """Load every file; print each refused file's problems. Returns the loaded ones and whether any failed."""
    loaded: list[tuple[Path, LoadResult]] = []
    failed = False
    for path in files:
        try:
            loaded.append((path, read_manifest(path, namespace)))
        except ManifestError as error:
            failed = True
            for problem in error.problems:
                err.print(f"[red]✗[/red] {escape(str(problem))}", highlight=False)
    return loaded, failed


@app.command()
def version() -> None:
    """Print faultmesh's version."""
    out.print(f"faultmesh {__version__}")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Manifest files (YAML or JSON); - reads stdin.")],
    namespace: NamespaceOption = DEFAULT_NAMESPACE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")] = False,
) -> None:
    """Check manifests against Chaos Mesh's schemas and admission rules."""
    results, failed = _read_manifests(files, namespace)
    for path, result in results:
        for note in result.notes:
            if not quiet:
                err.print(f"[dim]{escape(f'{path}: {note}')}[/dim]", highlight=False)
        if not quiet:
            for obj in result.objects:
                name = f"{obj.metadata.namespace or '-'}/{obj.metadata.name or obj.metadata.generate_name}"
                out.print(f"[green]✓[/green] {escape(f'{path}: {obj.kind} {name}')}", highlight=False)
            if not result.objects:
                out.print(f"[yellow]·[/yellow] {escape(str(path))}: no chaos-mesh.org objects", highlight=False)
    if failed:
        raise typer.Exit(EXIT_INVALID)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


@app.command()
def plan(
    files: Annotated[list[Path], typer.Argument(help="Manifest files (YAML or JSON); - reads stdin.")],
    pods: Annotated[
        Path | None,
        typer.Option(
            "--pods",
            help="Pods (and Nodes, Namespaces) to select from: a file of objects or `kubectl get -o yaml` output.",
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="Select from a live cluster's pods, nodes and namespaces instead."),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context (with --kubeconfig).")] = None,
    namespace: NamespaceOption = DEFAULT_NAMESPACE,
    seed: Annotated[
        str | None, typer.Option(help="Seed for the random modes, so the plan is reproducible.")
    ] = None,
    filter_namespaces: Annotated[
        bool,
        typer.Option(
            "--filter-namespaces",
            help="Only select in namespaces annotated chaos-mesh.org/inject=enabled.",
        ),
    ] = False,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")] = OutputFormat.TABLE,
) -> None:
    """Dry run: show which pods and containers each experiment would hit. Injects nothing."""
    from .planview import plan_rows, print_plan
    from .selection import InventoryError, Scope, SelectionError, load_inventory, plan_experiment

    if (pods is None) == (kubeconfig is None):
        err.print("[red]✗[/red] give --pods FILE (objects to select from) or --kubeconfig (a live cluster), not both")
        raise typer.Exit(EXIT_INVALID)
    source = str(pods) if pods is not None else f"cluster of {kubeconfig}"
    try:
        if pods is not None:
            inventory = load_inventory(_read_text(pods), source=source)
        else:
            assert kubeconfig is not None
            inventory = _cluster_inventory(kubeconfig, context)
    except InventoryError as error:
        for text in error.problems:
            err.print(f"[red]✗[/red] {escape(source)}: {escape(text)}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as error:
        err.print(f"[red]✗[/red] {escape(source)}: {escape(error.strerror or str(error))}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    scope = Scope(filter_namespaces=filter_namespaces)
    documents: list[dict[str, object]] = []
    results, failed = _read_manifests(files, namespace)
    for path, result in results:
        for obj in result.objects:
            try:
                plans = plan_experiment(obj, inventory, seed=seed, scope=scope)
            except SelectionError as error:
                failed = True
                where = f"{path}: {obj.kind} {obj.metadata.name}"
                err.print(f"[red]✗[/red] {escape(where)}: {escape(str(error))}", highlight=False)
                continue
            if output is OutputFormat.TABLE:
                print_plan(out, obj, plans)
            else:
                documents.append(plan_rows(obj, plans))
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(documents, indent=2) + "\n")
    elif output is OutputFormat.YAML:
        sys.stdout.write(yaml.safe_dump(documents, sort_keys=False, allow_unicode=True))
    if failed:
        raise typer.Exit(EXIT_INVALID)


def _cluster_inventory(kubeconfig: Path, context: str | None) -> Any:
    """Pods, nodes and namespaces of a live cluster as an inventory (read-only; the API server's own lists)."""
    import asyncio

    from .controller.kube import NAMESPACES, NODES, PODS, Kube, KubeError
    from .selection import inventory_from_objects

    async def fetch() -> list[dict[str, Any]]:
        async with await Kube.connect(kubeconfig, context) as kube:
            objects: list[dict[str, Any]] = []
            for resource in (PODS, NODES, NAMESPACES):
                items, _ = await kube.list_all(resource)
                objects += items
            return objects

    try:
        objects = asyncio.run(fetch())
    except KubeError as error:
        err.print(f"[red]✗[/red] {escape(str(kubeconfig))}: {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    return inventory_from_objects([{"kind": "List", "items": objects}], source=f"cluster of {kubeconfig}")


def _read_text(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    return path.read_text(encoding="utf-8")


@app.command()
def crds() -> None:
    """Print the CustomResourceDefinitions of every kind, generated from the models."""
    from .api.crd import crds_yaml

    sys.stdout.write(crds_yaml())


from .agent.main import agent_command, certs_command  # noqa: E402 -- imports only typer and the stdlib
from .host.cli import (  # noqa: E402
    delete_command,
    halt_command,
    pause_command,
    recover_command,
    resume_command,
    run_command,
)
from .host.targets import targets_command  # noqa: E402

app.command("agent")(agent_command)
app.command("agent-certs")(certs_command)
app.command("targets")(targets_command)
app.command("run")(run_command)
app.command("pause")(pause_command)
app.command("resume")(resume_command)
app.command("delete")(delete_command)
app.command("recover")(recover_command)
app.command("halt")(halt_command)


def main() -> None:
    """Entry point: run the app, turning a user's misuse into exit code 2 without a traceback."""
    app()


if __name__ == "__main__":
    main()
