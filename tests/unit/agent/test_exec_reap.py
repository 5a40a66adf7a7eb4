"""Reaping a spawn leaves no zombie: children die before their parent, so a living parent waits for each.

No root needed: this test process makes itself a child subreaper, standing for a container's init that
never waits for anyone. Whatever the executor orphans is re-parented here and stays a zombie, visibly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
from collections.abc import Iterator

import pytest

from faultmesh.agent.exec import Executor, Scope, read_stat
from faultmesh.kinds.plan import Reap, Spawn, Target

PR_SET_CHILD_SUBREAPER = 36
#: A parent with two children that waits for them (as stress-ng does for its workers).
TREE = ("sh", "-c", "sleep 1000 & sleep 1000 & wait")


@pytest.fixture
def subreaper() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        _reap_orphans()


def _orphans() -> list[int]:
    """Processes re-parented to this test process other than those it started itself."""
    own = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.ppid == own and stat.pgrp != os.getpgrp():
                found.append(stat.pid)
    return found


def _reap_orphans() -> None:
    for pid in _orphans():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


async def _spawn_tree(executor: Executor, scope: Scope) -> list[int]:
    target = Target(f"process://{os.getpid()}")
    spawned = await executor.run(Spawn(TREE, "tree", join_target_cgroup=False), target, scope)
    assert spawned is not None
    for _ in range(500):
        members = executor.spawned_alive(scope, "tree")
        if len(members) == 3:
            return members
        await asyncio.sleep(0.01)
    raise AssertionError(f"the tree did not start: {executor.spawned_alive(scope, 'tree')}")


@pytest.mark.parametrize("reap_signal", ["SIGKILL", "SIGTERM"])
def test_reaping_kills_children_before_their_parent(subreaper: None, reap_signal: str) -> None:
    async def scenario() -> tuple[list[int], list[int], list[str]]:
        executor = Executor()
        scope = Scope(tag=f"fmt-reap-{secrets.token_hex(3)}")
        members = await _spawn_tree(executor, scope)
        await executor.run(Reap("tree", reap_signal), Target(f"process://{os.getpid()}"), scope)
        left = executor.spawned_alive(scope, "tree")
        zombies = [f"{pid} ({stat.state}, parent {stat.ppid})" for pid in members
                   if (stat := read_stat(pid)) is not None]
        return members, left, zombies

    members, left, remains = asyncio.run(scenario())
    assert len(members) == 3
    assert left == []
    assert remains == [], "processes of the spawn remain after the reap (zombies nobody waits for)"
    assert _orphans() == []
