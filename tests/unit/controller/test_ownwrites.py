"""A pass does not start from a cached copy that has not seen the controller's own last write."""

from __future__ import annotations

import copy
from typing import Any

from faultmesh.controller.ownwrites import OwnWrites
from faultmesh.controller.reconciler import Reconciler

from .test_reconciler import NOW, Agents, Api, Pods, partition, run

KEY = ("PodChaos", "shop", "fail-web")
OTHER = ("PodChaos", "shop", "kill-web")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def writes(wait_limit: float = 10.0) -> tuple[OwnWrites[tuple[str, str, str]], Clock]:
    clock = Clock()
    return OwnWrites(wait_limit=wait_limit, clock=clock), clock


def test_nothing_written_nothing_stale() -> None:
    own, _ = writes()
    assert not own.stale(KEY, "41")


def test_the_copy_our_write_replaced_is_stale_until_the_cache_moves_on() -> None:
    own, _ = writes()
    own.wrote(KEY, "41")
    assert own.stale(KEY, "41")
    assert own.stale(KEY, "41"), "asking again changes nothing while the cache still lags"
    assert not own.stale(KEY, "57"), "the write's own version (or a later one) is fresh"
    assert len(own) == 0, "once the cache has caught up the entry is dropped"
    assert not own.stale(KEY, "41")


def test_versions_are_compared_only_for_equality() -> None:
    own, _ = writes()
    own.wrote(KEY, "9")
    # "10" is newer as a number but sorts before "9" as a string: neither order is assumed, only difference.
    assert not own.stale(KEY, "10")
    own.wrote(KEY, "abc")
    assert own.stale(KEY, "abc")


def test_each_key_is_its_own() -> None:
    own, _ = writes()
    own.wrote(KEY, "41")
    assert not own.stale(OTHER, "41")
    assert own.stale(KEY, "41")


def test_a_later_write_replaces_the_earlier_one() -> None:
    own, _ = writes()
    own.wrote(KEY, "41")  # 41 -> 57
    own.wrote(KEY, "57")  # the next pass started from 57 and wrote again: 57 -> 63
    assert own.stale(KEY, "57")
    assert not own.stale(KEY, "63")


def test_a_watch_that_never_delivers_blocks_nothing_after_the_wait_limit() -> None:
    own, clock = writes(wait_limit=10.0)
    own.wrote(KEY, "41")
    clock.now += 10.0
    assert own.stale(KEY, "41"), "still within the limit"
    clock.now += 0.1
    assert not own.stale(KEY, "41"), "past the limit the stale copy is acted on"
    assert len(own) == 0


def test_forget_drops_a_deleted_key() -> None:
    own, _ = writes()
    own.wrote(KEY, "41")
    own.forget(KEY)
    assert not own.stale(KEY, "41")
    own.forget(KEY)  # forgetting what is not there is fine


def test_entries_nobody_asks_about_again_expire_on_later_writes() -> None:
    own, clock = writes(wait_limit=10.0)
    own.wrote(KEY, "41")  # e.g. the release of an object whose deletion the watch delivered before this
    clock.now += 11.0
    own.wrote(OTHER, "70")
    assert len(own) == 1
    assert own.stale(OTHER, "70")


class Release(Api):
    """An API server that, like a real one, deletes an object whose last finalizer a write drops, and answers
    with the object as it was: the resourceVersion the write replaced."""

    async def update_experiment(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            self.updates.append(copy.deepcopy(obj))
            return copy.deepcopy(obj)
        return await super().update_experiment(kind, obj)


def test_the_reconciler_reports_each_write_with_the_version_it_replaced() -> None:
    api = Release()
    seen: list[tuple[str, str, str]] = []
    reconciler = Reconciler(
        api,
        Agents(),
        Pods(),
        owner="controller:test",
        clock=lambda: NOW,
        wrote=lambda kind, obj, replaced: seen.append((kind, obj["metadata"]["name"], replaced)),
    )
    obj = partition()
    run(reconciler, obj)  # adds the finalizer: 1 -> 2
    assert seen == [("NetworkChaos", "cut", "1")]

    deleted = copy.deepcopy(api.updates[-1])
    deleted["metadata"]["deletionTimestamp"] = "2027-01-15T08:01:00Z"
    deleted["metadata"]["resourceVersion"] = "7"
    run(reconciler, deleted)  # nothing was selected: released at once, and the answer still says 7
    assert seen[-1] == ("NetworkChaos", "cut", "7")
    assert api.updates[-1]["metadata"]["finalizers"] == []
    own: OwnWrites[str] = OwnWrites()
    own.wrote("cut", seen[-1][2])
    assert own.stale("cut", "7"), "the cached copy from before the release is not reconciled again"
