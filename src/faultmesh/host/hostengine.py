"""The agent engine, in-process, as host mode runs it: under the engine lock, with leases kept renewed.

``faultmesh run``, ``faultmesh serve``, the watchdog and the commands that clean up after a dead owner all
enter a :class:`HostEngine`. Entering takes the host's engine lock, replays and reconciles the agent journal
(so anything a dead process left behind whose lease ran out is recovered first), and starts renewing the
leases this process owns. Leaving stops renewing and closes the engine, leaving wanted faults in place: their
leases, or the watchdog, take them out if nobody recovers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from faultmesh.agent.exec import Executor
from faultmesh.agent.injections import Engine
from faultmesh.agent.journal import Journal
from faultmesh.agent.planners import builtin_planners
from faultmesh.agent.runtime import RuntimeConfig, Runtimes

from .state import EngineLock, Layout, owner_id

log = logging.getLogger(__name__)

#: Seconds a lease lasts unless renewed: the longest a fault outlives a runner that vanished without a
#: watchdog (the watchdog itself acts as soon as the runner is gone).
DEFAULT_LEASE_TTL = 5.0
JOURNAL_FILE = "agent.journal"


class HostEngine:
    def __init__(
        self,
        layout: Layout,
        role: str,
        *,
        runtime: RuntimeConfig | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lock_wait: float = 0.0,
    ) -> None:
        self.layout = layout
        self.owner = owner_id(role)
        self.lease_ttl = lease_ttl
        self.lock = EngineLock(layout)
        self.lock_wait = lock_wait
        self.runtimes = Runtimes(runtime or RuntimeConfig(containerd_namespace="default"))
        self.executor = Executor(resolve_pid=self.runtimes.resolve, kill_container=self.runtimes.kill_async)
        self.engine: Engine | None = None
        self._renewer: asyncio.Task[None] | None = None

    @property
    def agent(self) -> Engine:
        assert self.engine is not None, "enter the HostEngine first"
        return self.engine

    async def __aenter__(self) -> HostEngine:
        self.lock.acquire(self.owner, wait=self.lock_wait)
        try:
            self.layout.prepare()
            engine = Engine(Journal(self.layout.journal / JOURNAL_FILE), self.executor, builtin_planners())
            await engine.start()
        except BaseException:
            self.lock.release()
            self.runtimes.close()
            raise
        self.engine = engine
        self._renewer = asyncio.create_task(self._renew_forever())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.engine is not None:
            await self.engine.close()
        self.runtimes.close()
        self.lock.release()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                await self.agent.renew_owner(self.owner, self.lease_ttl)
            except Exception as error:
                log.warning("renewing the leases of %s failed: %s", self.owner, error)


class WatchdogError(RuntimeError):
    """The watchdog did not start; nothing may be injected without it."""


@dataclass
class Watchdog:
    """The owner's handle on its watchdog: a pipe the watchdog reads. ``done`` on it stands the watchdog down;
    the pipe closing without it (the owner died, or gave up mid-way) makes the watchdog recover at once."""

    process: subprocess.Popen[bytes]
    pipe: int

    def stand_down(self, timeout: float = 10.0) -> None:
        """Everything of the owner is recovered: let the watchdog go, and wait until it has."""
        if self.pipe != -1:
            with contextlib.suppress(OSError):
                os.write(self.pipe, b"done\n")
            self.abandon()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)

    def abandon(self) -> None:
        """Close the pipe without standing down: the watchdog recovers what the owner leaves."""
        if self.pipe != -1:
            os.close(self.pipe)
            self.pipe = -1


def spawn_watchdog(layout: Layout, owner: str, log_file: Path, containerd_namespace: str,
                   *, ready_timeout: float = 60.0) -> Watchdog:
    """Start the watchdog of ``owner`` in its own session (a kill of the owner's process group spares it) and
    wait until it watches: only then may the owner inject, or a kill in between would go unseen for a while."""
    ready_read, ready_write = os.pipe()
    watch_read, watch_write = os.pipe()
    try:
        with open(log_file, "ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "faultmesh.host.watchdog", "--state-dir", str(layout.root), "--owner", owner,
                 "--containerd-namespace", containerd_namespace, "--ready-fd", str(ready_write),
                 "--owner-fd", str(watch_read)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
                pass_fds=(ready_write, watch_read),
            )
        os.close(ready_write)
        ready_write = -1
        os.close(watch_read)
        watch_read = -1
        ready, _, _ = select.select([ready_read], [], [], ready_timeout)
        answer = os.read(ready_read, 64) if ready else b""
    except BaseException:
        os.close(watch_write)
        raise
    finally:
        for descriptor in (ready_read, ready_write, watch_read):
            if descriptor != -1:
                os.close(descriptor)
    watchdog = Watchdog(process, watch_write)
    if answer.strip() != b"watching":
        watchdog.abandon()
        process.kill()
        process.wait()
        raise WatchdogError(f"the watchdog did not start within {ready_timeout:g} s (see {log_file}); "
                            "nothing was injected")
    return watchdog
