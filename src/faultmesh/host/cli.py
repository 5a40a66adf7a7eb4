"""Host mode's commands for the ``faultmesh`` CLI: run, pause, resume, delete, recover, halt.

Each is a thin shell over :mod:`.runner` and :mod:`.commands`: parse options, print, pick the exit code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from .state import Layout

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Host mode's state (store, journal, runs); default $FAULTMESH_STATE_DIR "
                                     "or /var/lib/faultmesh."),
]
NamespaceFilter = Annotated[str | None, typer.Option("--namespace", "-n", help="The experiment's namespace.")]
KindFilter = Annotated[str | None, typer.Option("--kind", "-k", help="The experiment's kind, when names clash.")]


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]✗[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def run_command(
    file: Annotated[Path, typer.Argument(help="A manifest with one experiment (and optionally a StatusCheck).")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace for objects naming none.")] = "default",
    inventory: Annotated[Path | None, typer.Option(help="Inventory file of processes and network namespaces.")] = None,
    containerd_socket: Annotated[Path | None, typer.Option(help="containerd's socket.")] = None,
    containerd_namespace: Annotated[str, typer.Option(help="containerd namespace of the targets.")] = "default",
    docker_socket: Annotated[Path | None, typer.Option(help="docker's socket.")] = None,
    crio_socket: Annotated[Path | None, typer.Option(help="CRI-O's socket (listed with crictl).")] = None,
    seed: Annotated[str | None, typer.Option(help="Seed for the random modes (reproducible selection).")] = None,
    state_dir: StateDirOption = None,
    lease: Annotated[float, typer.Option(help="Seconds a fault outlives this process if it vanishes.")] = 5.0,
    probe_url: Annotated[str | None, typer.Option(help="Steady-state HTTP probe (GET; 2xx is healthy).")] = None,
    probe_command: Annotated[str | None, typer.Option(help="Steady-state command probe (exit 0 is healthy).")] = None,
    probe_from: Annotated[str | None, typer.Option(
        help="Run the probe inside this target's network namespace (namespace/name, see `faultmesh targets`).")] = None,
    probe_interval: Annotated[float, typer.Option(help="Seconds between probes.")] = 1.0,
    probe_timeout: Annotated[float, typer.Option(help="Seconds one probe may take.")] = 1.0,
    probe_failure_threshold: Annotated[int, typer.Option(help="Failures in a row that abort the run.")] = 3,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
) -> None:
    """Run one experiment on this host until its duration ends (or Ctrl-C), then recover it, verified."""
    from .runner import RunRefusedError, TargetOptions, build_guard, load_experiment, new_uid, prepare, run_prepared
    from .state import Layout
    from .state import state_dir as resolve_state_dir
    from .targets import HostTargetsError

    layout = Layout(resolve_state_dir(state_dir))
    options = TargetOptions(inventory, containerd_socket, containerd_namespace, docker_socket, crio_socket)
    try:
        resource, status_check, notes = load_experiment(file, namespace)
        try:
            targets = options.inventory()
        except HostTargetsError as error:
            raise RunRefusedError(error.problems) from None
        uid = new_uid()
        prepared = prepare(resource, targets, uid, seed=seed)
        guard = build_guard(status_check, targets, url=probe_url, command=probe_command, from_target=probe_from,
                            interval=probe_interval, timeout=probe_timeout, failure_threshold=probe_failure_threshold)
    except RunRefusedError as refused:
        for line in refused.problems:
            err.print(f"[red]✗[/red] {escape(line)}", highlight=False)
        raise typer.Exit(refused.exit_code) from None
    for note in notes + prepared.notes:
        if not quiet:
            err.print(f"[dim]note: {escape(note)}[/dim]", highlight=False)

    started = time.time()

    def on_started(run_id: str, run_dir: Path) -> None:
        if quiet:
            return
        targets_text = ", ".join(w.record_id for w in prepared.works)
        out.print(f"[bold]{escape(resource.kind)} {escape(prepared.resource.metadata.namespace or '')}/"
                  f"{escape(resource.metadata.name or '')}[/bold] on {len(prepared.works)} target(s): "
                  f"{escape(targets_text)}", highlight=False)
        out.print(f"run {escape(run_id)} — journal and report in {escape(str(run_dir))}", highlight=False)

    def on_progress(line: Any) -> None:
        if quiet:
            return
        colour = "yellow" if line.type == "Warning" else "green"
        out.print(f"[dim]{line.at - started:7.2f}s[/dim] [{colour}]{escape(line.reason):<10}[/{colour}] "
                  f"{escape(line.message)}", highlight=False)

    try:
        result = asyncio.run(run_prepared(layout, prepared, uid, options, lease_ttl=lease, guard=guard,
                                          on_progress=on_progress, on_started=on_started))
    except RunRefusedError as refused:
        for line in refused.problems:
            err.print(f"[red]✗[/red] {escape(line)}", highlight=False)
        raise typer.Exit(refused.exit_code) from None
    colour = "green" if result.exit_code == 0 else "red"
    out.print(f"[{colour}]{escape(result.outcome)}[/{colour}]: {escape(result.reason)} "
              f"({time.time() - started:.1f} s); report: {escape(str(result.run_dir / 'report.html'))}",
              highlight=False)
    raise typer.Exit(result.exit_code)


ExperimentName = Annotated[str, typer.Argument(help="The experiment's name.")]
WaitOption = Annotated[bool, typer.Option(help="Wait until its faults are recovered, verified.")]


def _print_outcome(state: Path | None, act: Callable[[Layout], str]) -> None:
    """Print the line a command answers, or fail with its message and exit code."""
    from .commands import CommandError, default_layout

    try:
        out.print(escape(act(default_layout(state))), highlight=False)
    except CommandError as error:
        raise _fail(str(error), error.exit_code) from None


# pause/resume and delete/recover differ only in one flag and their help; typer reads the help from the
# docstring, so each command is made by one factory and given its own.


def _pause_command(paused: bool, summary: str) -> Callable[..., None]:
    def command(
        name: ExperimentName,
        namespace: NamespaceFilter = None,
        kind: KindFilter = None,
        state_dir: StateDirOption = None,
    ) -> None:
        from .commands import pause

        _print_outcome(state_dir, lambda layout: pause(layout, name, namespace, kind, paused))

    command.__doc__ = summary
    return command


def _stop_command(remove: bool, summary: str) -> Callable[..., None]:
    def command(
        name: ExperimentName,
        namespace: NamespaceFilter = None,
        kind: KindFilter = None,
        state_dir: StateDirOption = None,
        wait: WaitOption = True,
    ) -> None:
        from .commands import stop

        _print_outcome(state_dir, lambda layout: stop(layout, name, namespace, kind, remove=remove, wait=wait))

    command.__doc__ = summary
    return command


pause_command = _pause_command(True, "Pause a running experiment: its faults are recovered until `faultmesh resume`.")
resume_command = _pause_command(
    False, "Resume a paused experiment: its faults are injected again (while its duration lasts)."
)
delete_command = _stop_command(True, "Recover an experiment's faults (verified) and delete it.")
recover_command = _stop_command(
    False, "Recover an experiment's faults now (verified) and end it; it stays listed (outcome Recovered)."
)


def halt_command(
    reason: Annotated[str, typer.Option(help="Why; shown to whoever tries to run next.")] = "halted by an operator",
    release: Annotated[bool, typer.Option("--release", help="Accept runs again after a halt.")] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Stop and recover every experiment on this host and refuse new runs until `halt --release`."""
    from .commands import CommandError, default_layout, halt
    from .commands import release as release_halt

    layout = default_layout(state_dir)
    try:
        if release:
            out.print(escape(release_halt(layout)), highlight=False)
            return
        lines = halt(layout, reason)
    except CommandError as error:
        raise _fail(str(error), error.exit_code) from None
    for line in lines:
        out.print(escape(line), highlight=False)
    if any(line.startswith("not verified") for line in lines):
        raise typer.Exit(1)
