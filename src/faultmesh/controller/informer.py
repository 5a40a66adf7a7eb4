"""List-then-watch caches of API objects, as client-go's informers keep them.

An :class:`Informer` lists a resource, then watches it from the list's resourceVersion, and keeps
``cache`` equal to what the API server holds, so the controller reads objects (and selects pods)
without asking the server each time. What keeps it correct across the ways a watch ends:

- the server closes the watch after its timeout: the informer watches again from the last
  resourceVersion it saw (bookmarks keep that version fresh even when nothing changes);
- the version is too old (410 Gone, the server no longer has that history): it lists again and
  reports, against its cache, what was added, changed or deleted meanwhile;
- any other error (server down, connection reset): it retries with exponential backoff and jitter.

Each change is reported to ``on_change`` in the order it happened, and bumps ``version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from faultmesh.controller.kube import Kube, KubeError, ResourceType

_log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, str]
ChangeType = Literal["added", "updated", "deleted"]

#: The server's watch timeout is drawn between this and twice this, as client-go does, so many
#: informers' watches do not all end (and reconnect) at the same moment.
DEFAULT_WATCH_TIMEOUT_S = 300
BACKOFF_INITIAL_S = 0.8
BACKOFF_MAX_S = 30.0
#: A watch that ran this long was healthy: the next failure starts the backoff from the beginning.
HEALTHY_WATCH_S = 10.0
#: A watch the server ends sooner than this is treated as a failure (backoff), not as its timeout.
QUICK_END_S = 0.5


@dataclass(frozen=True)
class Change(Generic[T]):
    """One change to the cache. ``obj`` is the new value (for a delete, the last known one); ``old`` the previous."""

    type: ChangeType
    key: Key
    obj: T
    old: T | None = None


def object_key(obj: dict[str, Any]) -> Key:
    """``(namespace, name)``; the namespace is ``""`` for cluster-scoped objects."""
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


Handler = Callable[[Change[T]], Awaitable[None] | None]


class Informer(Generic[T]):
    """A cache of one resource (optionally one namespace, one label selector), kept current by a watch.

    ``transform`` turns each object into what the cache stores (by default the object's JSON as is), e.g.
    a parsed selection ``Pod``; an object it rejects is logged and left out of the cache. ``on_change`` may
    be a plain function or a coroutine function; it is awaited before the next change is applied, and an
    exception in it is logged, never fatal.
    """

    def __init__(
        self,
        kube: Kube,
        resource: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        on_change: Handler[T] | None = None,
        *,
        field_selector: str | None = None,
        transform: Callable[[dict[str, Any]], T] | None = None,
        watch_timeout: int = DEFAULT_WATCH_TIMEOUT_S,
        page_size: int = 500,
        name: str | None = None,
    ):
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.on_change = on_change
        self.transform = transform
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.name = name or resource.describe(namespace)
        self.cache: dict[Key, T] = {}
        #: Set once the first list is in the cache (and stays set across relists).
        self.synced = asyncio.Event()
        #: Bumped on every change to the cache: a consumer compares it to know whether to recompute.
        self.version = 0
        #: The resourceVersion the next watch starts from (the list's, then each event's and bookmark's).
        self.resource_version: str | None = None
        #: How many times the informer listed (1 after the first sync; more after 410 Gone).
        self.lists = 0
        #: How many watches it opened (one more after each server timeout or reconnect).
        self.watches = 0
        self._versions: dict[Key, str] = {}
        self._task: asyncio.Task[None] | None = None

    # ---- reading -----------------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> T | None:
        return self.cache.get((namespace, name))

    def __len__(self) -> int:
        return len(self.cache)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self.cache.values()))

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first list; raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self.synced.wait()

    # ---- running -----------------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start listing and watching in a task (idempotent); :meth:`stop` ends it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"informer {self.name}")
        return self._task

    async def stop(self) -> None:
        """Stop watching; the cache keeps what it holds, and :meth:`start` resumes from the last version."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        """List and watch until cancelled (what :meth:`start` runs in a task)."""
        loop = asyncio.get_running_loop()
        failures = 0
        must_list = self.resource_version is None
        while True:
            started = loop.time()
            try:
                if must_list:
                    await self._relist()
                    must_list = False
                    failures = 0
                    started = loop.time()
                await self._watch()
                if loop.time() - started >= QUICK_END_S:
                    # The server ended the watch at its timeout: watch again from where it stopped.
                    failures = 0
                    continue
                problem = "the watch ended at once"  # e.g. a proxy that drops streams: do not spin
            except KubeError as error:
                if error.status == 410:
                    _log.info("%s: %s; listing again", self.name, error)
                    must_list = True
                    continue
                problem = str(error)
            except Exception as error:  # a bug must not silently end the cache's updates
                _log.exception("%s: unexpected failure", self.name)
                problem = f"{type(error).__name__}: {error}"
                must_list = True
            if loop.time() - started >= HEALTHY_WATCH_S:
                failures = 0
            failures += 1
            delay = _backoff(failures)
            _log.warning("%s: %s; retrying in %.1f s", self.name, problem, delay)
            await asyncio.sleep(delay)

    async def _relist(self) -> None:
        items, resource_version = await self.kube.list_all(
            self.resource, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, page_size=self.page_size,
        )
        self.lists += 1
        listed: set[Key] = set()
        for obj in items:
            key = object_key(obj)
            listed.add(key)
            await self._upsert(key, obj)
        # Objects the cache holds but the list does not were deleted while the watch could not tell.
        for key in [key for key in self._versions if key not in listed]:
            await self._remove(key)
        self.resource_version = resource_version
        self.synced.set()

    async def _watch(self) -> None:
        timeout = random.randint(self.watch_timeout, 2 * self.watch_timeout)
        events = self.kube.watch(
            self.resource, self.namespace, resource_version=self.resource_version,
            label_selector=self.label_selector, field_selector=self.field_selector,
            timeout_seconds=timeout, allow_bookmarks=True,
        )
        self.watches += 1
        async with contextlib.aclosing(events):
            async for event in events:
                if event.type == "BOOKMARK":
                    self.resource_version = event.resource_version or self.resource_version
                    continue
                key = object_key(event.object)
                if event.type == "DELETED":
                    await self._remove(key)
                else:
                    await self._upsert(key, event.object)
                self.resource_version = event.resource_version or self.resource_version

    # ---- the cache ---------------------------------------------------------------------------------------

    async def _upsert(self, key: Key, obj: dict[str, Any]) -> None:
        version = _resource_version(obj)
        if key in self._versions and self._versions[key] == version:
            return  # a relist returning what the cache already holds is not a change
        try:
            value: T = self.transform(obj) if self.transform is not None else obj  # type: ignore[assignment]
        except Exception as error:
            _log.warning("%s: %s/%s left out of the cache: %s", self.name, key[0], key[1], error)
            await self._remove(key)
            return
        old = self.cache.get(key)
        existed = key in self._versions
        self.cache[key] = value
        self._versions[key] = version
        await self._report(Change("updated" if existed else "added", key, value, old))

    async def _remove(self, key: Key) -> None:
        if key not in self._versions:
            return
        del self._versions[key]
        old = self.cache.pop(key)
        await self._report(Change("deleted", key, old, old))

    async def _report(self, change: Change[T]) -> None:
        self.version += 1
        if self.on_change is None:
            return
        try:
            result = self.on_change(change)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.exception("%s: handler failed on %s %s/%s", self.name, change.type, *change.key)


def _backoff(failures: int) -> float:
    """Exponential backoff with jitter: about 0.8 s, 1.6 s, ... up to 30 s."""
    delay = min(BACKOFF_INITIAL_S * 2.0 ** (failures - 1), BACKOFF_MAX_S)
    return delay * random.uniform(0.8, 1.2)
