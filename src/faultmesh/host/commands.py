"""The bodies of ``faultmesh pause|resume|delete|recover|halt`` in host mode.

They steer through the store: a running experiment's owner (``faultmesh run`` or ``serve``) reads its row
every tick and converges. When the owner is gone (and its watchdog has not finished yet), the command takes
the host's engine itself and settles the experiment: recovery is never left to nobody.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from faultmesh.agent.runtime import RuntimeConfig

from .driver import OUTCOME_ABORTED, OUTCOME_RECOVERED, RECOVER_REASON
from .hostengine import HostEngine
from .settle import settle
from .state import EngineBusyError, Layout, owner_alive
from .store import ExperimentRow, NotFoundError, Store, StoreError

Printer = Callable[[str], None]


class CommandError(Exception):
    """A command could not do what was asked; the message is printable, ``exit_code`` what to exit with."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def open_store(layout: Layout) -> Store:
    if not (layout.root / "faultmesh.db").exists():
        raise CommandError(f"no host-mode state in {layout.root} (nothing has run here yet; see `faultmesh run`)")
    try:
        return Store.open(layout.root)
    except StoreError as error:
        raise CommandError(str(error)) from None


def find(store: Store, name: str, namespace: str | None, kind: str | None) -> ExperimentRow:
    try:
        return store.find(name, namespace, kind)
    except StoreError as error:
        raise CommandError(str(error)) from None


def _driven(row: ExperimentRow) -> bool:
    return bool(row.owner) and owner_alive(row.owner)


def pause(layout: Layout, name: str, namespace: str | None, kind: str | None, paused: bool) -> str:
    store = open_store(layout)
    row = find(store, name, namespace, kind)
    if not row.active:
        raise CommandError(f"{row.key} already finished ({row.outcome}: {row.reason}); nothing to "
                           f"{'pause' if paused else 'resume'}")
    if row.paused == paused:
        return f"{row.key} is already {'paused' if paused else 'running'}"
    store.set_paused(row.uid, paused)
    verb = "paused" if paused else "resumed"
    if row.kind == "PodChaos" and row.manifest.get("spec", {}).get("action") in ("pod-kill", "container-kill"):
        return f"{row.key} {verb} (a one-shot kill is neither stopped nor repeated by a pause, as in Chaos Mesh)"
    return f"{row.key} {verb}"


async def _settle_orphan(layout: Layout, store: Store, row: ExperimentRow, *, outcome: str, reason: str,
                         remove: bool) -> list[str]:
    host = HostEngine(layout, "cli", runtime=RuntimeConfig(containerd_namespace="default"), lock_wait=10.0)
    async with host:
        fresh = store.get_uid(row.uid)
        if _driven(fresh):
            return []  # an owner appeared (a serve picked it up); it will converge
        return await settle(host, store, layout, fresh, outcome=outcome, reason=reason, remove=remove)


def _wait_finished(store: Store, uid: str, *, gone: bool, timeout: float, progress: Printer | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            row = store.get_uid(uid)
        except NotFoundError:
            return
        if not gone and not row.active:
            return
        if row.active and row.owner and not owner_alive(row.owner):
            return  # the owner died meanwhile; the caller settles it
        time.sleep(0.1)
    raise CommandError(f"the owner has not finished recovering after {timeout:g} s; `faultmesh describe` shows "
                       "why (recovery goes on, retried until verified)", exit_code=1)


def stop(layout: Layout, name: str, namespace: str | None, kind: str | None, *, remove: bool,
         wait: bool = True, timeout: float = 120.0, progress: Printer | None = None) -> str:
    """``delete`` (``remove``) or ``recover``: recover the experiment's faults, verified; then drop or keep it."""
    store = open_store(layout)
    row = find(store, name, namespace, kind)
    verb = "deleted" if remove else "recovered"
    if not row.active:
        if remove:
            store.remove(row.uid)
            return f"{row.key} deleted (it had finished: {row.outcome})"
        return f"{row.key} had already finished ({row.outcome}: {row.reason})"
    if _driven(row):
        if remove:
            store.request_delete(row.uid, time.time())
        else:
            store.request_recover(row.uid, time.time(), RECOVER_REASON)
        if not wait:
            return f"{row.key}: asked its owner ({row.owner}) to recover it"
        _wait_finished(store, row.uid, gone=remove, timeout=timeout, progress=progress)
        try:
            fresh = store.get_uid(row.uid)
        except NotFoundError:
            return f"{row.key} {verb}"
        if not _driven(fresh) and fresh.active:
            pass  # the owner died while we waited: settle below
        else:
            return f"{row.key} {verb} ({fresh.outcome or 'finished'})"
    outcome = "Deleted" if remove else OUTCOME_RECOVERED
    try:
        errors = asyncio.run(_settle_orphan(layout, store, row, outcome=outcome,
                                            reason=f"{verb} on request; its owner was gone", remove=remove))
    except EngineBusyError as error:
        raise CommandError(f"{row.key}: {error}", exit_code=3) from None
    if errors:
        raise CommandError(f"{row.key}: not verified recovered: {'; '.join(errors)}", exit_code=1)
    return f"{row.key} {verb} (its owner was gone; recovered here, verified)"


def halt(layout: Layout, reason: str, *, timeout: float = 120.0) -> list[str]:
    """Refuse new runs, stop every active experiment, and recover whatever the journal still holds."""
    layout.prepare()
    store = Store.open(layout.root)
    store.halt(reason, time.time())
    lines = [f"host mode halted ({reason}): new runs are refused until `faultmesh halt --release`"]
    active = [row for row in store.list() if row.active]
    for row in active:
        if _driven(row):
            try:
                _wait_finished(store, row.uid, gone=False, timeout=timeout, progress=None)
            except CommandError as error:
                lines.append(f"{row.key}: {error}")
                continue
    orphans = [row for row in store.list() if row.active]
    try:
        errors = asyncio.run(_halt_engine(layout, store, orphans, reason))
    except EngineBusyError as error:
        lines.append(f"the engine is still held ({error}); its owner sees the halt and stops")
        errors = []
    stopped = [row.key for row in active]
    lines.append(f"stopped and recovered: {', '.join(stopped) if stopped else 'no active experiment'}")
    lines += [f"not verified recovered: {error}" for error in errors]
    return lines


async def _halt_engine(layout: Layout, store: Store, orphans: list[ExperimentRow], reason: str) -> list[str]:
    host = HostEngine(layout, "cli", runtime=RuntimeConfig(containerd_namespace="default"), lock_wait=10.0)
    errors: list[str] = []
    async with host:
        for row in orphans:
            errors += await settle(host, store, layout, row, outcome=OUTCOME_ABORTED, reason=f"halted: {reason}")
        # Whatever else the journal holds (an injection no stored experiment claims) goes too.
        views = await host.agent.halt(f"halted: {reason}")
        errors += [f"{view.id}: {view.last_error}" for view in views
                   if view.phase not in ("recovered", "failed", "done")]
        host.agent.release()  # the store keeps host mode halted; the engine itself is per process
    return errors


def release(layout: Layout) -> str:
    layout.prepare()
    store = Store.open(layout.root)
    halted = store.halted()
    store.release()
    if halted is None:
        return "host mode was not halted"
    return f"host mode released (it was halted: {halted[0]}); runs are accepted again"


def default_layout(state: Path | None) -> Layout:
    from .state import state_dir

    return Layout(state_dir(state))
