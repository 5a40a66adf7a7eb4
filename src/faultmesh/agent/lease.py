"""Owner leases, the agent's dead-man switch: an injection lives only while its owner keeps renewing.

Expiry is wall-clock time (seconds since the epoch) because it is journalled and must mean the same
after a restart. While the agent runs, each lease also has a monotonic deadline, so setting the wall
clock back cannot stretch a lease; setting it forward only ends leases early, the safe direction.
:class:`LeaseBook` is pure bookkeeping over injected clocks; :class:`LeaseWatcher` is the asyncio
task that calls back as soon as a lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class LeaseError(RuntimeError):
    """A renewal that cannot be granted (unknown injection, or another owner's)."""


@dataclass(frozen=True)
class Lease:
    owner: str
    ttl: float
    #: Wall-clock expiry, seconds since the epoch.
    expires_at: float
    #: Monotonic deadline, meaningful only inside the process that set it.
    deadline: float

    def expired(self, wall: float, monotonic: float) -> bool:
        return wall >= self.expires_at or monotonic >= self.deadline

    def remaining(self, wall: float, monotonic: float) -> float:
        return max(0.0, min(self.expires_at - wall, self.deadline - monotonic))


class LeaseBook:
    """The leases of the injections that are still wanted, keyed by injection id."""

    def __init__(self, wall: Clock = time.time, monotonic: Clock = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._leases: dict[str, Lease] = {}
        #: Set whenever a lease changes, so the watcher recomputes its next wake-up.
        self.changed = asyncio.Event()

    def grant(self, injection_id: str, owner: str, ttl: float) -> Lease:
        """A fresh lease of ``ttl`` seconds from now."""
        return self.restore(injection_id, owner, ttl, self._wall() + ttl)

    def restore(self, injection_id: str, owner: str, ttl: float, expires_at: float) -> Lease:
        """Track a lease whose wall-clock expiry is known (from the journal after a restart)."""
        lease = Lease(owner, ttl, expires_at, self._monotonic() + (expires_at - self._wall()))
        self._leases[injection_id] = lease
        self.changed.set()
        return lease

    def renew(self, injection_id: str, owner: str, ttl: float | None = None) -> Lease:
        """Extend a lease by ``ttl`` (default: its own) from now; only its owner may."""
        lease = self._leases.get(injection_id)
        if lease is None:
            raise LeaseError(f"injection {injection_id!r} has no lease (unknown, expired or recovered)")
        if owner != lease.owner:
            raise LeaseError(f"injection {injection_id!r} is owned by {lease.owner!r}, not {owner!r}")
        if lease.expired(self._wall(), self._monotonic()):  # expiry is final, even before the watcher acts
            raise LeaseError(f"the lease of injection {injection_id!r} has expired; it is being recovered")
        return self.grant(injection_id, owner, lease.ttl if ttl is None else ttl)

    def drop(self, injection_id: str) -> None:
        if self._leases.pop(injection_id, None) is not None:
            self.changed.set()

    def get(self, injection_id: str) -> Lease | None:
        return self._leases.get(injection_id)

    def owned_by(self, owner: str) -> list[str]:
        return [key for key, lease in self._leases.items() if lease.owner == owner]

    def expired(self) -> list[str]:
        wall, monotonic = self._wall(), self._monotonic()
        return [key for key, lease in self._leases.items() if lease.expired(wall, monotonic)]

    def next_expiry_in(self) -> float | None:
        """Seconds until the earliest lease runs out (0 when one already has), None without leases."""
        if not self._leases:
            return None
        wall, monotonic = self._wall(), self._monotonic()
        return min(lease.remaining(wall, monotonic) for lease in self._leases.values())

    def __len__(self) -> int:
        return len(self._leases)


class LeaseWatcher:
    """Calls ``on_expired(id)`` once for each lease that runs out, as soon as it does.

    An expired lease is dropped from the book before the callback runs, so it fires once; the
    callback (the engine's recovery) is responsible for retrying until it has verified its work.
    """

    def __init__(self, book: LeaseBook, on_expired: Callable[[str], Awaitable[object]], *,
                 max_sleep: float = 1.0) -> None:
        self.book = book
        self._on_expired = on_expired
        self._max_sleep = max_sleep
        self._task: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lease-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for callback in list(self._callbacks):
            callback.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            for injection_id in self.book.expired():
                self.book.drop(injection_id)
                callback = asyncio.create_task(self._fire(injection_id), name=f"lease-expired:{injection_id}")
                self._callbacks.add(callback)
                callback.add_done_callback(self._callbacks.discard)
            self.book.changed.clear()
            wait = self.book.next_expiry_in()
            timeout = self._max_sleep if wait is None else min(wait, self._max_sleep)
            # asyncio.wait, not wait_for: 3.11's wait_for can swallow a cancel that races its timeout.
            waiter = asyncio.ensure_future(self.book.changed.wait())
            try:
                await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()

    async def _fire(self, injection_id: str) -> object:
        try:
            return await self._on_expired(injection_id)
        except Exception:
            log.exception("recovering %s after its lease expired failed", injection_id)
            return None
