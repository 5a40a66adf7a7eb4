"""A rate-limited work queue for asyncio, with client-go's workqueue semantics.

Informers put keys in, workers take them out. What makes it more than an :class:`asyncio.Queue`:

- a key waiting in the queue is there once, however often it is added (changes coalesce);
- a key is never handed to two workers at once: added while being processed, it is queued again
  only when the worker calls :meth:`WorkQueue.done`, so nothing is lost and nothing runs twice;
- :meth:`WorkQueue.add_after` delays a key (the earliest of several delays wins);
- :meth:`WorkQueue.add_rate_limited` delays it by a per-key exponential backoff (0.05 s doubling up to
  60 s), reset by :meth:`WorkQueue.forget` once the key succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

DEFAULT_BASE_DELAY_S = 0.05
DEFAULT_MAX_DELAY_S = 60.0


class QueueShutDownError(Exception):
    """The queue was shut down and holds nothing more to hand out."""


class ExponentialBackoff(Generic[K]):
    """Per-key delay ``base * 2**failures``, capped at ``maximum`` (client-go's item exponential limiter)."""

    def __init__(self, base: float = DEFAULT_BASE_DELAY_S, maximum: float = DEFAULT_MAX_DELAY_S):
        if base <= 0 or maximum < base:
            raise ValueError(f"backoff needs 0 < base <= maximum, got base {base} and maximum {maximum}")
        self.base = base
        self.maximum = maximum
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """The delay before ``key``'s next attempt; each call counts one more failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # 2**failures overflows a float long after the cap is reached; stop doubling there.
        if failures >= 64:
            return self.maximum
        return min(self.base * 2.0**failures, self.maximum)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)


class WorkQueue(Generic[K]):
    """Keys to work on; see the module's docstring for the guarantees."""

    def __init__(self, backoff: ExponentialBackoff[K] | None = None, name: str = "queue"):
        self.name = name
        self.backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self._queue: deque[K] = deque()
        #: Keys that need processing: queued ones, and processing ones that were added again.
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        #: Delayed keys: when each becomes ready (loop time) and the timer that will add it.
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        """Keys ready to be handed out (not those delayed, nor those being processed)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    @property
    def waiting(self) -> int:
        """Keys delayed by :meth:`add_after` or :meth:`add_rate_limited` and not yet ready."""
        return len(self._waiting)

    def add(self, key: K) -> None:
        """Queue ``key`` unless it is already queued; ignored once the queue is shutting down."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it again, so the worker that has it now is never overtaken
        self._queue.append(key)
        self._idle.clear()
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; when it is already delayed, the earlier time wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        self._waiting[key] = (ready_at, loop.call_at(ready_at, self._ready, key))

    def add_rate_limited(self, key: K) -> None:
        """Queue ``key`` after its backoff delay, which doubles with every call until :meth:`forget`."""
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        """``key`` succeeded: its next failure starts the backoff from the base delay again."""
        self.backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.backoff.failures(key)

    def _ready(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    async def get(self) -> K:
        """The next key, waiting for one; raises :class:`QueueShutDownError` once shut down and empty.

        The caller must call :meth:`done` with the key when it has finished with it.
        """
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDownError(self.name)
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                getter.cancel()
                # Woken but cancelled before taking the key: pass the wake-up on, or the key would sit there.
                if self._queue and not self._shutting_down:
                    self._wake_one()
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        """The worker has finished with ``key``; if it was added meanwhile, it is queued again now."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()
        elif not self._queue and not self._processing:
            self._idle.set()

    def shutdown(self) -> None:
        """Stop taking keys: delayed keys are dropped, waiting workers get :class:`QueueShutDownError` once the
        queue is empty; keys already queued are still handed out, so a draining worker can finish them."""
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    async def join(self) -> None:
        """Wait until nothing is queued or being processed (delayed keys do not count)."""
        await self._idle.wait()


#: A handler's answer: None when done with the key, or seconds after which to look at it again.
Outcome = float | None


async def run_workers(queue: WorkQueue[K], workers: int, handler: Callable[[K], Awaitable[Outcome]]) -> None:
    """Process ``queue`` with ``workers`` concurrent tasks until it is shut down and drained.

    A handler that returns normally resets the key's backoff (and returns a delay to be called again later,
    e.g. when a duration runs out); one that raises is logged and the key is retried with backoff.
    Cancelling this coroutine cancels the workers.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")

    async def work() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDownError:
                return
            try:
                again = await handler(key)
            except Exception as error:
                _log.warning("%s: %r failed (retry %d): %s", queue.name, key, queue.num_requeues(key) + 1, error,
                             exc_info=_log.isEnabledFor(logging.DEBUG))
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
                if again is not None:
                    queue.add_after(key, again)
            finally:
                queue.done(key)

    async with asyncio.TaskGroup() as group:
        for index in range(workers):
            group.create_task(work(), name=f"{queue.name}-worker-{index}")
