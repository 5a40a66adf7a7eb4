"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics, so two controller
replicas never act at once.

The Lease's spec is the record: ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
``renewTime``, ``leaseTransitions``. A candidate takes the lease when nobody holds it, when it holds it
itself, or when the holder has not renewed it for ``leaseDurationSeconds``. "Not renewed" is judged by
the candidate's own clock -- how long since the record last changed *as seen here* -- never by comparing
``renewTime`` with local time, so clock skew between replicas cannot hand the lease over early.

The leader renews every ``retry_period``; when a renewal has not succeeded within ``renew_deadline``
(or the lease turns out to be someone else's) it steps down: the leading work is cancelled before any
other candidate can take over (``renew_deadline < lease_duration``). On a clean shutdown the lease is
released (holder emptied, duration 1 s), so a standby takes over at once instead of after the duration.

Every write is guarded by the Lease's resourceVersion: of two candidates racing for an expired lease,
the API server lets exactly one through (the other gets 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from faultmesh.controller.kube import Kube, KubeError

_log = logging.getLogger(__name__)

#: client-go waits ``retry_period * (1 + random * 1.2)`` between attempts to acquire.
JITTER_FACTOR = 1.2
#: A released lease says it lasts one second, so whoever looks next may take it.
RELEASED_DURATION_S = 1


def micro_time(epoch: float) -> str:
    """A ``metav1.MicroTime`` (RFC 3339, microseconds, UTC)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease's spec says about its holder."""

    holder: str = ""
    lease_duration_s: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_s,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


def decide(
    current: LeaseRecord | None,
    identity: str,
    *,
    lease_duration_s: int,
    observed_at: float,
    now: float,
    wall_now: float,
) -> LeaseRecord | None:
    """The record to write to acquire or renew the lease, or None while another holder's lease is valid.

    ``current`` is the record as read (None: no Lease yet); ``observed_at`` is when this candidate saw it
    change last and ``now`` the same monotonic clock; ``wall_now`` (epoch) goes into the record's times.
    """
    stamp = micro_time(wall_now)
    if current is None:
        return LeaseRecord(identity, lease_duration_s, stamp, stamp, 0)
    held_by_other = bool(current.holder) and current.holder != identity
    if held_by_other and observed_at + current.lease_duration_s > now:
        return None
    if current.holder == identity:
        return LeaseRecord(identity, lease_duration_s, current.acquire_time or stamp, stamp, current.transitions)
    # Taking over from a holder that expired or released: a new term begins.
    return LeaseRecord(identity, lease_duration_s, stamp, stamp, current.transitions + 1)


def released(current: LeaseRecord, wall_now: float) -> LeaseRecord:
    """The record that gives the lease up: no holder, a one-second duration, the transitions kept."""
    stamp = micro_time(wall_now)
    return LeaseRecord("", RELEASED_DURATION_S, stamp, stamp, current.transitions)


Attempt = Literal["acquired", "held", "failed"]


class LeaderElector:
    """Campaigns for the Lease ``namespace/name`` as ``identity`` and runs the leading work while it holds it."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        *,
        release_on_cancel: bool = True,
    ):
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if not lease_duration > renew_deadline:
            raise ValueError(
                f"lease_duration ({lease_duration}) must be greater than renew_deadline ({renew_deadline})"
            )
        if not renew_deadline > JITTER_FACTOR * retry_period > 0:
            raise ValueError(
                f"renew_deadline ({renew_deadline}) must be greater than {JITTER_FACTOR} × retry_period "
                f"({retry_period}), which must be positive"
            )
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        #: The record last seen (read or written), and when it was seen to change (event-loop clock).
        self.observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def leader(self) -> str:
        """The holder as last seen (``""``: nobody, or not looked yet)."""
        return self.observed.holder if self.observed else ""

    def _observe(self, record: LeaseRecord, now: float) -> None:
        if record != self.observed:
            self.observed = record
            self._observed_at = now

    async def try_acquire_or_renew(self) -> Attempt:
        """One attempt: ``acquired`` (this candidate holds the lease now), ``held`` (another validly holds it),
        or ``failed`` (the API server could not be asked, or another candidate wrote first)."""
        loop = asyncio.get_running_loop()
        duration = math.ceil(self.lease_duration)
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            now = loop.time()
            if lease is None:
                record = decide(None, self.identity, lease_duration_s=duration, observed_at=now, now=now,
                                wall_now=time.time())
                assert record is not None
                self._lease = await self.kube.create_lease(self.namespace, self.name, record.to_spec())
                self._observe(record, loop.time())
                return "acquired"
            current = LeaseRecord.from_spec(lease.get("spec"))
            self._observe(current, now)
            record = decide(current, self.identity, lease_duration_s=duration, observed_at=self._observed_at,
                            now=now, wall_now=time.time())
            if record is None:
                return "held"
            updated = {**lease, "spec": {**(lease.get("spec") or {}), **record.to_spec()}}
            self._lease = await self.kube.update_lease(updated)
            self._observe(record, loop.time())
            return "acquired"
        except KubeError as error:
            if error.status in (409, 422):
                _log.info("lease %s/%s: another candidate wrote first: %s", self.namespace, self.name, error)
            else:
                _log.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return "failed"

    async def _acquire(self) -> None:
        while await self.try_acquire_or_renew() != "acquired":
            await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))
        self._leading = True
        _log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)

    async def _keep_renewing(self) -> None:
        """Renew every retry period; return when leadership is lost (deadline passed, or the lease taken)."""
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                async with asyncio.timeout(self.renew_deadline):
                    while (attempt := await self.try_acquire_or_renew()) == "failed":
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                _log.error("lease %s/%s: not renewed within %.1f s; stepping down", self.namespace, self.name,
                           self.renew_deadline)
                return
            if attempt == "held":
                _log.error("lease %s/%s: now held by %s; stepping down", self.namespace, self.name, self.leader)
                return

    async def release(self) -> bool:
        """Give the lease up if this candidate holds it; False when it could not (another took it, or no API)."""
        if self._lease is None or self.observed is None or self.observed.holder != self.identity:
            return False
        record = released(self.observed, time.time())
        lease = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.to_spec()}}
        try:
            async with asyncio.timeout(self.renew_deadline):
                self._lease = await self.kube.update_lease(lease)
        except (KubeError, TimeoutError) as error:
            _log.warning("lease %s/%s: not released: %s", self.namespace, self.name, error)
            return False
        self._observe(record, asyncio.get_running_loop().time())
        _log.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
        return True

    async def run(
        self,
        on_started_leading: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        """Wait until this candidate leads, then run ``on_started_leading()`` while it does.

        Returns when leadership is lost (the work is cancelled first) or when the work ends by itself (an
        exception in it is re-raised). Cancelling ``run`` is the clean shutdown: the work is cancelled and
        the lease released (``release_on_cancel``). ``on_stopped_leading`` is called once the work has
        stopped, only if this candidate led.
        """
        await self._acquire()
        work = asyncio.create_task(on_started_leading(), name=f"leading {self.namespace}/{self.name}")
        renewer = asyncio.create_task(self._keep_renewing(), name=f"renewing {self.namespace}/{self.name}")
        lost = False
        try:
            await asyncio.wait({work, renewer}, return_when=asyncio.FIRST_COMPLETED)
            lost = renewer.done()
        finally:
            for task in (work, renewer):
                task.cancel()
            for task in (work, renewer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not lost and self.release_on_cancel:
                await self.release()
            self._leading = False
            if on_stopped_leading is not None:
                result = on_stopped_leading()
                if inspect.isawaitable(result):
                    await result
        failure = work.exception() if work.done() and not work.cancelled() else None
        if failure is not None:
            raise failure
