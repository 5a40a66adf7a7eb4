"""The ``faultmesh`` command.

Exit codes: 0 success, 2 the input was refused (bad manifest, bad option), 1 anything else.
No command prints a traceback for a user's mistake.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .api.loader import DEFAULT_NAMESPACE, ManifestError
from .files import read_manifest

EXIT_INVALID = 2

app = typer.Typer(
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
    failed = False
    for path in files:
        try:
            result = read_manifest(path, namespace)
        except ManifestError as error:
            failed = True
            for problem in error.problems:
                err.print(f"[red]✗[/red] {escape(str(problem))}", highlight=False)
            continue
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


@app.command()
def crds() -> None:
    """Print the CustomResourceDefinitions of every kind, generated from the models."""
    from .api.crd import crds_yaml

    sys.stdout.write(crds_yaml())


def main() -> None:
    """Entry point: run the app, turning a user's misuse into exit code 2 without a traceback."""
    app()


if __name__ == "__main__":
    main()
