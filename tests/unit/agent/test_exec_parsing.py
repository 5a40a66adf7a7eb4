"""The executor's readers of /proc (over a fake /proc) and the signals it accepts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from faultmesh.agent import exec as agent_exec
from faultmesh.agent.exec import Executor, Scope, read_stat
from faultmesh.kinds.kill import plan_process_kill
from faultmesh.kinds.plan import Target


def test_every_signal_the_kill_planner_names_is_one_the_executor_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # The planner keeps unnamed real-time signals (SIGRTMIN+n) as numbers; the executor must send them.
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, number: sent.append((pid, int(number))))
    target = Target(f"process://{os.getpid()}")

    async def kill_with_every_signal() -> None:
        for number in range(1, 65):
            plan = plan_process_kill(target, number)
            await Executor().run(plan.steps[0].apply, target, Scope(tag="fmt-signals"))

    asyncio.run(kill_with_every_signal())
    assert sent == [(os.getpid(), number) for number in range(1, 65)]


@pytest.fixture
def fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(agent_exec, "PROC", tmp_path)
    return tmp_path


def test_stat_survives_a_command_name_with_spaces_and_parentheses(fake_proc: Path) -> None:
    (fake_proc / "4242").mkdir()
    fields = ["S", "1", "4200", "4200", "0", "-1", "4194560"] + ["0"] * 12 + ["987654"] + ["0"] * 10
    (fake_proc / "4242" / "stat").write_text("4242 (evil) name (x)) " + " ".join(fields) + "\n")
    stat = read_stat(4242)
    assert stat is not None
    assert (stat.state, stat.ppid, stat.pgrp, stat.session, stat.start_time) == ("S", 1, 4200, 4200, 987654)
    assert read_stat(4243) is None


def test_nsfs_bind_mounts_are_read_from_mountinfo(fake_proc: Path) -> None:
    (fake_proc / "self").mkdir()
    (fake_proc / "self" / "mountinfo").write_text(
        "612 29 0:4 net:[4026532526] /run/netns/fmt\\040a rw - nsfs nsfs rw\n"
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "613 29 0:4 mnt:[4026532595] /run/mnt-ns rw - nsfs nsfs rw\n")
    assert agent_exec._nsfs_mounts() == [("/run/netns/fmt a", 4026532526), ("/run/mnt-ns", 4026532595)]
