"""Lease arithmetic over injected clocks, and the watcher's callback."""

from __future__ import annotations

import asyncio

import pytest

from faultmesh.agent.lease import LeaseBook, LeaseError, LeaseWatcher


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.monotonic = 50.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def book(clocks: Clocks) -> LeaseBook:
    return LeaseBook(lambda: clocks.wall, lambda: clocks.monotonic)


def test_a_lease_expires_after_its_ttl(book: LeaseBook, clocks: Clocks) -> None:
    lease = book.grant("a", "ctl", 10.0)
    assert lease.expires_at == clocks.wall + 10.0
    clocks.advance(9.99)
    assert book.expired() == []
    assert book.next_expiry_in() == pytest.approx(0.01)
    clocks.advance(0.01)
    assert book.expired() == ["a"]
    assert book.next_expiry_in() == 0.0


def test_renewal_restarts_the_ttl_from_now(book: LeaseBook, clocks: Clocks) -> None:
    book.grant("a", "ctl", 10.0)
    clocks.advance(8.0)
    assert book.renew("a", "ctl").expires_at == clocks.wall + 10.0
    assert book.renew("a", "ctl", 3.0).expires_at == clocks.wall + 3.0
    clocks.advance(3.0)
    assert book.expired() == ["a"]


def test_only_the_owner_renews(book: LeaseBook) -> None:
    book.grant("a", "ctl", 10.0)
    with pytest.raises(LeaseError, match="owned by 'ctl', not 'intruder'"):
        book.renew("a", "intruder")
    with pytest.raises(LeaseError, match="no lease"):
        book.renew("missing", "ctl")


def test_setting_the_wall_clock_back_does_not_stretch_a_lease(book: LeaseBook, clocks: Clocks) -> None:
    book.grant("a", "ctl", 10.0)
    clocks.wall -= 3600.0
    clocks.monotonic += 10.0
    assert book.expired() == ["a"]


def test_setting_the_wall_clock_forward_ends_leases_early(book: LeaseBook, clocks: Clocks) -> None:
    book.grant("a", "ctl", 10.0)
    clocks.wall += 3600.0
    assert book.expired() == ["a"]


def test_a_restored_lease_keeps_its_wall_clock_expiry(book: LeaseBook, clocks: Clocks) -> None:
    lease = book.restore("a", "ctl", 30.0, clocks.wall + 5.0)
    assert lease.deadline == clocks.monotonic + 5.0
    assert book.restore("b", "ctl", 30.0, clocks.wall - 1.0).expired(clocks.wall, clocks.monotonic)
    assert book.expired() == ["b"]
    assert sorted(book.owned_by("ctl")) == ["a", "b"]
    book.drop("b")
    assert book.expired() == [] and len(book) == 1


def test_the_watcher_fires_once_per_expired_lease() -> None:
    async def scenario() -> list[str]:
        fired: list[str] = []
        book = LeaseBook()

        async def callback(key: str) -> None:
            fired.append(key)

        watcher = LeaseWatcher(book, callback, max_sleep=0.05)
        watcher.start()
        book.grant("short", "ctl", 0.05)
        book.grant("long", "ctl", 60.0)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if fired:
                break
        await asyncio.sleep(0.1)
        await watcher.stop()
        assert book.get("short") is None and book.get("long") is not None
        return fired

    assert asyncio.run(scenario()) == ["short"]


def test_a_failing_callback_does_not_stop_the_watcher() -> None:
    async def scenario() -> list[str]:
        fired: list[str] = []

        async def callback(key: str) -> None:
            fired.append(key)
            if key == "first":
                raise RuntimeError("boom")

        book = LeaseBook()
        watcher = LeaseWatcher(book, callback, max_sleep=0.02)
        watcher.start()
        book.grant("first", "ctl", 0.01)
        await asyncio.sleep(0.1)
        book.grant("second", "ctl", 0.01)
        await asyncio.sleep(0.1)
        await watcher.stop()
        return fired

    assert asyncio.run(scenario()) == ["first", "second"]


def test_an_expired_lease_cannot_be_renewed(book: LeaseBook, clocks: Clocks) -> None:
    book.grant("a", "ctl", 10.0)
    clocks.advance(10.0)
    with pytest.raises(LeaseError, match="has expired"):
        book.renew("a", "ctl")
