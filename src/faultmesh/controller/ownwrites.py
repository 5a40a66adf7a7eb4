"""The controller's own experiment writes, so that a pass never starts from a cached copy they made stale.

A pass reads the experiment from the informer's cache, which hears of the pass's own write only when the
watch delivers it. A key queued again before then (a pod the pass acted on changed, a recheck) would start
from the copy the write replaced and redo its work: after a pod-failure experiment's release, restore every
pod once more. client-go controllers skip such a copy and look again once the watch has caught up; so does
this one.

For each experiment the last write is kept as the resourceVersion it replaced (not the one it answered with:
a release deletes the object, and its answer carries the version it replaced). A cached copy at that
resourceVersion has not seen the write; any other is the write's own or a later one (the cache only moves
forward), and the entry is dropped. resourceVersions are opaque: they are only compared for equality.
If the watch does not deliver within :data:`WAIT_LIMIT_S` (it may be restarting), the stale copy is acted on
after all: a pass from it does redundant work, or fails with a conflict, but is never wrong for long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: How long a pass waits at most for the watch to bring the controller's own write.
WAIT_LIMIT_S = 10.0
#: How soon to look again at a key whose cached copy is older than our write.
RECHECK_S = 0.05


@dataclass(frozen=True)
class _Write:
    replaced: str
    at: float


class OwnWrites(Generic[K]):
    """Per key: the resourceVersion our last write replaced, until the cache shows something newer."""

    def __init__(self, wait_limit: float = WAIT_LIMIT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.wait_limit = wait_limit
        self.clock = clock
        self._writes: dict[K, _Write] = {}

    def __len__(self) -> int:
        return len(self._writes)

    def wrote(self, key: K, replaced: str) -> None:
        """A write to ``key`` succeeded on top of resourceVersion ``replaced``."""
        now = self.clock()
        # Entries of objects that went away before their write was recorded are never looked at again.
        for expired in [k for k, write in self._writes.items() if now - write.at > self.wait_limit]:
            del self._writes[expired]
        self._writes[key] = _Write(replaced, now)

    def stale(self, key: K, cached: str) -> bool:
        """Whether the cached copy of ``key`` at resourceVersion ``cached`` predates our last write to it.

        False once the wait limit has passed since that write, so a watch that never delivers blocks nothing.
        """
        write = self._writes.get(key)
        if write is None:
            return False
        if cached == write.replaced and self.clock() - write.at <= self.wait_limit:
            return True
        del self._writes[key]
        return False

    def forget(self, key: K) -> None:
        """``key`` is gone (deleted, or no longer cached)."""
        self._writes.pop(key, None)
