"""Host mode's commands on a running experiment, through the real CLI: pause, resume, delete, recover, halt,
get and describe, and a second run of a name that is already running.

Each test drives a ``faultmesh run`` in the background against a lab of its own (see ``host_fixtures.py``),
steers it with the commands as a user would, and checks the effect on real traffic or processes after each
step, the store's record, and that nothing is left once it ends.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

from host_fixtures import EVENTUALLY, HostLab, host_lab_fixture  # noqa: F401  (the host_lab fixture)

LEASE = 5.0  # the runner's default --lease


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = EVENTUALLY) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)


def test_pause_resume_and_delete_steer_a_running_partition(host_lab: HostLab) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    manifest = lab.partition("cut", duration="120s")
    runner = lab.start_run(manifest)
    runner.wait_for(r"Applied ", times=2)
    assert lab.http().startswith("blocked")
    injected = lab.kernel_state()
    assert injected != baseline["kernel"]

    # A second run of the same experiment while it runs is refused, and injects nothing more.
    second = lab.run(manifest)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "nothing was injected" in second.stderr and "Traceback" not in second.stderr
    assert lab.kernel_state() == injected
    assert [row.active for row in lab.rows()] == [True]

    listed = lab.cli("get", "networkchaos", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)["items"]
    assert item["metadata"]["name"] == "cut" and item["metadata"]["namespace"] == lab.namespace

    paused = lab.cli("pause", "cut")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    lab.wait_http(want_ok=True)
    wait_until(lambda: lab.kernel_state() == baseline["kernel"], "the paused partition's rules removed")
    assert lab.row("cut").paused and lab.row("cut").active
    again = lab.cli("pause", "cut")
    assert again.returncode == 0 and "already paused" in again.stdout

    resumed = lab.cli("resume", "cut")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    lab.wait_http(want_ok=False)
    wait_until(lambda: lab.kernel_state() == injected, "the resumed partition's rules back, the same as before")

    described = lab.cli("describe", "cut")
    assert described.returncode == 0, described.stderr
    for reason in ("Started", "Applied", "Paused", "Recovered"):
        assert reason in described.stdout, described.stdout

    run_id = lab.row("cut").run_id
    deleted = lab.cli("delete", "cut")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted" in deleted.stdout
    assert lab.http() == "200"
    assert runner.wait() == 0, runner.output
    assert lab.rows() == [], "delete left the experiment in the store"
    lab.assert_all_gone(baseline)

    journal = json.loads((lab.state_dir / "runs" / run_id / "journal.json").read_text())
    assert journal["outcome"] == "Deleted"
    assert len(journal["windows"]) == 2, journal["windows"]  # injected, paused, injected again, deleted
    first, second_window = journal["windows"]
    assert first["end"] < second_window["start"]
    gone = lab.cli("pause", "cut")
    assert gone.returncode == 2 and "not found" in gone.stderr


def test_recover_ends_a_run_and_keeps_its_record(host_lab: HostLab) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    runner = lab.start_run(lab.stress("burn"))
    runner.wait_for(r"Applied ")
    assert [p for p in lab.spawned() if p.comm.startswith("stress-ng")]

    recovered = lab.cli("recover", "burn")
    assert recovered.returncode == 0, recovered.stderr
    assert "recovered" in recovered.stdout
    assert runner.wait() == 0, runner.output
    lab.assert_all_gone(baseline)
    row = lab.row("burn")
    assert (row.outcome, row.reason) == ("Recovered", "recovered on request")
    assert lab.journal(row)["targets"][0]["recovered_verified"]

    late = lab.cli("resume", "burn")
    assert late.returncode == 2 and "already finished" in late.stderr
    shown = lab.cli("get", "stresschaos", "burn", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["metadata"]["name"] == "burn"
    removed = lab.cli("delete", "burn")
    assert removed.returncode == 0 and "deleted" in removed.stdout
    assert lab.rows() == []


def test_delete_recovers_itself_when_runner_and_watchdog_are_both_gone(host_lab: HostLab) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    runner = lab.start_run(lab.partition("cut"))
    runner.wait_for(r"Applied ", times=2)
    (watchdog,) = lab.watchdogs()
    os.kill(watchdog.pid, signal.SIGKILL)
    wait_until(lambda: not lab.watchdogs(), "the watchdog gone")
    runner.kill(signal.SIGKILL)
    runner.wait()
    # Nobody runs the host's engine now: the partition stays until a process takes the engine over.
    assert lab.http().startswith("blocked")
    assert lab.row("cut").active

    # Once the lease has run out, the next process to start the engine (here a second run of the same name,
    # refused since the first one's record is still active) recovers what the dead runner left.
    time.sleep(LEASE)
    again = lab.run(lab.partition("cut"))
    assert again.returncode == 3, again.stdout + again.stderr
    assert "already exists and is still active" in again.stderr
    assert lab.http() == "200"
    assert lab.snapshot() == baseline

    deleted = lab.cli("delete", "cut")
    assert deleted.returncode == 0, deleted.stderr
    assert "its owner was gone" in deleted.stdout
    assert lab.http() == "200"
    assert lab.rows() == []
    lab.assert_all_gone(baseline)


def test_halt_recovers_a_running_experiment_and_refuses_runs_until_released(host_lab: HostLab) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    runner = lab.start_run(lab.partition("cut"))
    runner.wait_for(r"Applied ", times=2)
    assert lab.http().startswith("blocked")

    halted = lab.cli("halt", "--reason", "game day is over")
    assert halted.returncode == 0, halted.stdout + halted.stderr
    assert "halted (game day is over)" in halted.stdout
    assert f"stopped and recovered: NetworkChaos/{lab.namespace}/cut" in halted.stdout
    assert lab.http() == "200"
    assert runner.wait() == 1, runner.output
    assert "Aborted: host mode halted: game day is over" in runner.output
    lab.assert_all_gone(baseline)
    assert lab.row("cut").outcome == "Aborted"

    refused = lab.run(lab.stress("burn", duration="3s"))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "host mode is halted" in refused.stderr and "game day is over" in refused.stderr
    assert "faultmesh halt --release" in refused.stderr and "nothing was injected" in refused.stderr
    assert lab.snapshot() == baseline
    assert [row.name for row in lab.rows()] == ["cut"]

    released = lab.cli("halt", "--release")
    assert released.returncode == 0 and "released" in released.stdout
    accepted = lab.run(lab.stress("burn", duration="3s"))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert lab.row("burn").outcome == "Completed"
    lab.assert_all_gone(baseline)


def test_halt_and_release_with_nothing_running(host_lab: HostLab) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    halted = lab.cli("halt")
    assert halted.returncode == 0, halted.stdout + halted.stderr
    assert "stopped and recovered: no active experiment" in halted.stdout
    again = lab.cli("halt", "--reason", "second")
    assert again.returncode == 0
    released = lab.cli("halt", "--release")
    assert released.returncode == 0 and "it was halted: halted by an operator" in released.stdout
    twice = lab.cli("halt", "--release")
    assert twice.returncode == 0 and "was not halted" in twice.stdout
    assert lab.snapshot() == baseline


def test_commands_name_what_is_wrong(host_lab: HostLab) -> None:
    lab = host_lab
    for command in ("pause", "resume", "delete", "recover"):
        empty = lab.cli(command, "cut")
        assert empty.returncode == 2, (command, empty.stdout, empty.stderr)
        assert "nothing has run here yet" in empty.stderr and "Traceback" not in empty.stderr
    lab.cli("halt", "--release")  # makes the store
    for command in ("pause", "resume", "delete", "recover"):
        unknown = lab.cli(command, "cut")
        assert unknown.returncode == 2, (command, unknown.stdout, unknown.stderr)
        assert "cut not found" in unknown.stderr and "no experiment is recorded" in unknown.stderr
    described = lab.cli("describe", "cut")
    assert described.returncode == 2 and "not found" in described.stderr
