"""The watchdog of one host-mode owner: when that process dies, recover everything it left, verified.

``faultmesh run`` starts it in its own session before it injects anything. It waits on the owner's PID
(a pidfd: woken the moment the process ends, however it ends). A runner that ended normally leaves nothing
behind and the watchdog exits at once. One that was killed leaves wanted injections: the watchdog takes the
engine lock, replays the journal, recovers every injection of the dead owner, closes its experiments in the
store as Interrupted, finishes the run journal and report, and exits.

If the watchdog is killed too, nothing is lost: the injections' leases expire, and the next process to start
the host's engine (any ``faultmesh run``, ``serve``, ``recover``) recovers them on start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import select
import sys
import time
from pathlib import Path

from faultmesh.agent.runtime import RuntimeConfig

from .driver import OUTCOME_INTERRUPTED
from .hostengine import HostEngine
from .settle import settle
from .state import EngineBusyError, Layout, owner_alive, owner_pid
from .store import Store

log = logging.getLogger("faultmesh.watchdog")


def wait_for_exit(owner: str, ready_fd: int | None = None, owner_fd: int | None = None) -> bool:
    """Block until the owner's process is gone, or it stands the watchdog down on ``owner_fd``.

    Returns True when stood down (the owner recovered everything), False when the owner is gone or gave up.
    Says ``watching`` on ``ready_fd`` once the wait is armed.
    """
    pid = owner_pid(owner)

    def ready() -> None:
        if ready_fd is not None:
            os.write(ready_fd, b"watching\n")
            os.close(ready_fd)

    if pid is None or not owner_alive(owner):
        ready()
        return False
    try:
        descriptor = os.pidfd_open(pid)
    except (OSError, AttributeError):
        ready()
        while owner_alive(owner):
            if owner_fd is not None and select.select([owner_fd], [], [], 0.05)[0]:
                return os.read(owner_fd, 16).strip() == b"done"
            time.sleep(0.05)
        return False
    try:
        ready()
        if not owner_alive(owner):  # the PID could have been recycled between the check and the open
            return False
        poller = select.poll()
        poller.register(descriptor, select.POLLIN)
        if owner_fd is not None:
            poller.register(owner_fd, select.POLLIN | select.POLLHUP)
        while True:
            for fired, _ in poller.poll(1000):
                if fired == owner_fd:
                    return os.read(owner_fd, 16).strip() == b"done"
                return False
    finally:
        os.close(descriptor)


async def recover_after(layout: Layout, owner: str, containerd_namespace: str, lock_wait: float,
                        *, retry_after_owner: bool = True) -> int:
    store = Store.open(layout.root)
    rows = [row for row in store.list() if row.owner == owner and row.finished_at is None]
    if not rows:
        # The runner records its experiment before it injects, and finishes it after it recovered: no
        # unfinished experiment of its means nothing of its can be in place.
        log.info("%s ended cleanly; nothing to recover", owner)
        return 0
    host = HostEngine(layout, "watchdog", runtime=RuntimeConfig(containerd_namespace=containerd_namespace),
                      lock_wait=lock_wait)
    try:
        async with host:
            left = [view for view in host.agent.list()
                    if view.owner == owner and view.phase in ("injecting", "injected", "recovering")]
            reason = f"its runner ({owner}) died; recovered by the watchdog"
            errors: list[str] = []
            for row in rows:
                errors += await settle(host, store, layout, row, outcome=OUTCOME_INTERRUPTED, reason=reason)
            # Injections of the owner that no stored experiment claims (the store write was lost) go too.
            from .settle import recover_injections

            errors += await recover_injections(host, [v.id for v in left if not any(
                v.id.startswith(row.uid + "/") for row in rows)], reason)
            for error in errors:
                log.error("not verified recovered: %s", error)
            log.info("recovered what %s left behind (%d experiment(s))", owner, len(rows))
            return 1 if errors else 0
    except EngineBusyError as error:
        if error.holder.split()[0:1] == [owner] and retry_after_owner:
            # The owner itself still holds the engine (it gave up on us but has not exited): wait for it.
            log.info("%s still holds the engine; waiting for it to exit", owner)
            await asyncio.to_thread(wait_for_exit, owner)
            return await recover_after(layout, owner, containerd_namespace, lock_wait, retry_after_owner=False)
        # Another process drives the engine now; it started by reconciling the journal, and the dead
        # owner's leases expire under it.
        log.info("%s", error)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faultmesh-watchdog")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--containerd-namespace", default="default")
    parser.add_argument("--lock-wait", type=float, default=30.0)
    parser.add_argument("--ready-fd", type=int, default=None, help="Write 'watching' there once watching.")
    parser.add_argument("--owner-fd", type=int, default=None,
                        help="The owner writes 'done' there when it recovered everything; EOF means it gave up.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog %(levelname)s %(message)s",
                        stream=sys.stderr)
    layout = Layout(args.state_dir)
    log.info("watching %s", args.owner)
    if wait_for_exit(args.owner, args.ready_fd, args.owner_fd):
        log.info("%s stood the watchdog down: everything of it is recovered", args.owner)
        return 0
    log.info("%s is gone (or gave up)", args.owner)
    return asyncio.run(recover_after(layout, args.owner, args.containerd_namespace, args.lock_wait))


if __name__ == "__main__":
    sys.exit(main())
