"""Host-mode steady-state guards: built from a StatusCheck or from options; samples from worker replies; the loop.

The sampling loop runs here against a scripted stand-in for the probe worker (no process, no namespace); the
real worker, in real network namespaces, is exercised by tests/node/test_host_steady.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultmesh.api.loader import load_text
from faultmesh.api.statuscheck import StatusCheck
from faultmesh.host.steady import (
    PROBE_FROM_ANNOTATION,
    CommandProbe,
    Guard,
    GuardError,
    HttpProbe,
    ProbeError,
    ProbeWorker,
    Sampler,
    take_sample,
)

REFERENCE_EXAMPLE = Path("/work/shared/reference/chaos-mesh/examples/statuscheck-example.yaml")

STATUS_CHECK = """
apiVersion: chaos-mesh.org/v1alpha1
kind: StatusCheck
metadata:
  name: web-health
  namespace: demo
  annotations: {host.faultmesh.io/probe-from: demo/client}
spec:
  mode: Continuous
  type: HTTP
  duration: 90s
  intervalSeconds: 2
  timeoutSeconds: 1
  failureThreshold: 4
  successThreshold: 2
  recordsHistoryLimit: 50
  http:
    url: http://169.254.10.2:8080/health
    method: POST
    headers: {X-Probe: [faultmesh]}
    body: ping
    criteria: {statusCode: 200-204}
"""


def status_check(text: str) -> StatusCheck:
    (resource,) = load_text(text).objects
    assert isinstance(resource, StatusCheck)
    return resource


def test_a_status_check_becomes_a_guard_with_its_numbers_and_origin() -> None:
    guard = Guard.from_status_check(status_check(STATUS_CHECK))
    assert guard.kind == "HTTP" and guard.name == "web-health"
    assert guard.probe == HttpProbe(url="http://169.254.10.2:8080/health", status_code="200-204", method="POST",
                                    headers={"X-Probe": ("faultmesh",)}, body="ping")
    assert (guard.mode, guard.interval_seconds, guard.timeout_seconds, guard.failure_threshold,
            guard.success_threshold, guard.records_history_limit, guard.duration_seconds) == (
        "Continuous", 2, 1, 4, 2, 50, 90.0)
    assert guard.from_target == "demo/client" and guard.from_pid is None
    assert guard.describe() == "POST http://169.254.10.2:8080/health (from demo/client)"
    resolved = guard.resolved(4242)
    assert (resolved.from_pid, resolved.from_target) == (4242, "demo/client")
    assert resolved.journal_header() == {
        "name": "web-health", "kind": "HTTP", "target": "POST http://169.254.10.2:8080/health (from demo/client)",
        "interval_seconds": 2, "timeout_seconds": 1, "failure_threshold": 4, "success_threshold": 2,
    }
    assert PROBE_FROM_ANNOTATION == "host.faultmesh.io/probe-from"


def test_chaos_mesh_s_own_example_is_a_synchronous_guard_with_the_crd_defaults() -> None:
    guard = Guard.from_status_check(status_check(REFERENCE_EXAMPLE.read_text()))
    assert (guard.mode, guard.interval_seconds, guard.timeout_seconds, guard.failure_threshold,
            guard.success_threshold, guard.records_history_limit, guard.duration_seconds) == (
        "Synchronous", 10, 1, 3, 1, 100, None)
    assert guard.probe == HttpProbe(url="http://123.123.123.123", status_code="200")
    assert guard.describe() == "http://123.123.123.123"


def test_a_status_check_whose_url_is_a_bare_path_is_refused_naming_the_spec_field() -> None:
    text = STATUS_CHECK.replace("http://169.254.10.2:8080/health", "/health")  # valid for Chaos Mesh, no host
    with pytest.raises(GuardError) as caught:
        Guard.from_status_check(status_check(text))
    assert caught.value.problems == ["web-health: spec.http.url: \"/health\" is not an http:// or https:// URL"]


def test_options_make_a_command_guard() -> None:
    guard = Guard.from_options(name="db", command=["pg_isready", "-h", "10.0.0.3"], interval_seconds=0.5,
                               timeout_seconds=0.25, failure_threshold=2, duration="1m", from_pid=77)
    assert guard.kind == "Command" and guard.probe == CommandProbe(("pg_isready", "-h", "10.0.0.3"))
    assert (guard.mode, guard.interval_seconds, guard.duration_seconds) == ("Continuous", 0.5, 60.0)
    assert guard.describe() == "pg_isready -h 10.0.0.3 (from pid 77)"
    assert guard.probe.request(0.25) == {"kind": "command", "argv": ["pg_isready", "-h", "10.0.0.3"],
                                         "timeout": 0.25}


def test_options_default_to_any_2xx_for_a_url() -> None:
    guard = Guard.from_options(url="http://127.0.0.1:8080/")
    assert isinstance(guard.probe, HttpProbe) and guard.probe.status_code == "200-299"
    assert guard.thresholds.failure_threshold == 3 and guard.thresholds.mode == "Continuous"


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["probe: url, command: give exactly one (an HTTP URL to request, or a command to run)"]),
        ({"url": "http://a/", "command": ["true"]},
         ["probe: url, command: give exactly one (an HTTP URL to request, or a command to run)"]),
        ({"command": []}, ["probe: command: [] is not a non-empty list of non-empty strings"]),
        ({"command": ["true"], "status_code": "200"},
         ["probe: criteria.statusCode: applies to an HTTP probe (url) only"]),
        ({"url": "http://a/", "duration": "soon"}, ["probe: duration: 'soon' is not a duration (e.g. 30s, 5m)"]),
        ({"url": "ftp://a/"}, ['probe: http.url: "ftp://a/" is not an http:// or https:// URL']),
        ({"url": "http://a:port/"}, ['probe: http.url: "http://a:port/" has port "port", which is not a number']),
        ({"url": "http://a/", "status_code": "2xx"},
         ['probe: http.criteria.statusCode: "2xx" is neither a status code (200) nor a range (200-299)']),
        ({"url": "http://a/", "method": "PUT"}, ["probe: http.method: 'PUT' is neither GET nor POST"]),
        ({"url": "http://a/", "interval_seconds": 0, "timeout_seconds": float("nan"), "failure_threshold": 0,
          "from_pid": -3},
         ["probe: intervalSeconds: 0 is not a positive number of seconds",
          "probe: timeoutSeconds: nan is not a positive number of seconds",
          "probe: failureThreshold: 0 is not a whole number ≥ 1",
          "probe: fromPid: -3 is not a process id"]),
    ],
)
def test_bad_options_are_refused_all_at_once_naming_each_field(options: dict[str, Any], problems: list[str]) -> None:
    with pytest.raises(GuardError) as caught:
        Guard.from_options(**options)
    assert caught.value.problems == problems


def test_http_replies_are_judged_by_the_criteria() -> None:
    probe = HttpProbe(url="http://a/", status_code="200-299")
    assert probe.judge({"status": 204}) == (True, "204")
    assert probe.judge({"status": 503}) == (False, "unexpected status code: 503")


def test_command_replies_pass_on_exit_zero_and_keep_the_last_output_line() -> None:
    probe = CommandProbe(("check",))
    assert probe.judge({"exit_code": 0, "output": "fine"}) == (True, "exit 0")
    assert probe.judge({"exit_code": 2, "output": "first\nconnection refused"}) == (False,
                                                                                     "exit 2: connection refused")
    assert probe.judge({"exit_code": 1, "output": ""}) == (False, "exit 1")


class ScriptedWorker(ProbeWorker):
    """Stands in for the worker process: answers from a script, one reply (or ProbeError) per request."""

    def __init__(self, replies: Iterator[dict[str, Any] | ProbeError]) -> None:
        super().__init__(None)
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.started = 0
        self.closed = 0
        self.alive = False

    @property
    def running(self) -> bool:
        return self.alive

    async def start(self) -> None:
        self.started += 1
        self.alive = True

    async def run(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.requests.append(request)
        reply = next(self.replies)
        if isinstance(reply, ProbeError):
            self.alive = False
            raise reply
        return reply

    async def close(self) -> None:
        self.closed += 1
        self.alive = False


def replies(*script: dict[str, Any] | ProbeError, then: dict[str, Any]) -> Iterator[dict[str, Any] | ProbeError]:
    yield from script
    while True:
        yield then


OK = {"status": 200, "latency_ms": 1.5}
DOWN = {"error": "connection refused", "latency_ms": 0.4}


def test_a_sample_records_the_worker_s_latency_and_verdict() -> None:
    guard = Guard.from_options(url="http://a/", status_code="200")
    worker = ScriptedWorker(replies(OK, {"status": 500, "latency_ms": 2.0}, DOWN, {"what": 1},
                                    ProbeError("the probe worker exited: boom"), then=OK))
    clock = iter([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])

    async def five() -> list[Any]:
        return [await take_sample(worker, guard, lambda: next(clock)) for _ in range(6)]

    samples = asyncio.run(five())
    assert [(s.at, s.ok, s.latency_ms, s.detail) for s in samples] == [
        (10.0, True, 1.5, "200"),
        (11.0, False, 2.0, "unexpected status code: 500"),
        (12.0, False, 0.4, "connection refused"),
        (13.0, False, None, "the probe worker answered {'what': 1}"),
        (14.0, False, None, "the probe worker exited: boom"),
        (15.0, True, 1.5, "200"),
    ]
    assert worker.started == 2  # restarted after it died
    assert worker.requests[0] == {"kind": "http", "url": "http://a/", "method": "GET", "body": None, "timeout": 1.0,
                                  "headers": {}}


def test_the_sampler_reports_the_failure_once_and_keeps_measuring_until_stopped() -> None:
    guard = Guard.from_options(url="http://a/", interval_seconds=0.01, failure_threshold=3)
    worker = ScriptedWorker(replies(OK, OK, DOWN, OK, DOWN, DOWN, DOWN, DOWN, then=OK))
    failures: list[int] = []
    seen: list[bool] = []

    async def on_failed(sampler: Sampler) -> None:
        failures.append(len(sampler.samples))

    async def scenario() -> Sampler:
        sampler = Sampler(guard, on_failed=on_failed, on_sample=lambda sample: seen.append(sample.ok), worker=worker)
        await sampler.start()
        assert await asyncio.wait_for(sampler.wait(), 5) == "Failed"
        while len(sampler.samples) < 12:
            await asyncio.sleep(0.01)
        await sampler.stop()
        await sampler.stop()  # twice is fine
        return sampler

    sampler = asyncio.run(scenario())
    assert failures == [7]  # the third failure in a row is the seventh sample
    assert sampler.verdict == "Failed" and sampler.judge.reason == "FailureThresholdExceed"
    assert len(sampler.samples) >= 12 and sampler.samples[-1].ok  # measured on after the verdict
    assert seen == [sample.ok for sample in sampler.samples]
    assert worker.closed == 1 and not sampler.running
    probe = sampler.journal_probe()
    assert probe["verdict"] == "Failed" and len(probe["samples"]) == len(sampler.samples)
    assert probe["samples"][2] == {"at": sampler.samples[2].at, "ok": False, "latency_ms": 0.4,
                                   "detail": "connection refused"}


def test_a_synchronous_guard_completes_healthy_at_its_success_threshold() -> None:
    guard = Guard.from_options(url="http://a/", interval_seconds=0.01, mode="Synchronous")
    guard = Guard(**{**guard.__dict__, "success_threshold": 2})
    worker = ScriptedWorker(replies(OK, DOWN, OK, OK, then=DOWN))

    async def scenario() -> Sampler:
        async with Sampler(guard, worker=worker) as sampler:
            assert await asyncio.wait_for(sampler.wait(), 5) == "Healthy"
            return sampler

    sampler = asyncio.run(scenario())
    assert sampler.judge.reason == "SuccessThresholdExceed" and sampler.judge.count == 4


def test_a_guard_with_a_duration_stops_sampling_when_it_is_over() -> None:
    guard = Guard.from_options(url="http://a/", interval_seconds=0.01, duration="100ms")
    worker = ScriptedWorker(replies(then=OK))

    async def scenario() -> Sampler:
        sampler = Sampler(guard, worker=worker)
        await sampler.start()
        assert await asyncio.wait_for(sampler.wait(), 5) == "Healthy"
        await asyncio.wait_for(sampler._task, 5)  # type: ignore[arg-type]  # the loop ends by itself
        await sampler.stop()
        return sampler

    sampler = asyncio.run(scenario())
    assert sampler.judge.reason == "DurationExceed"
    assert all(sample.at <= sampler.judge.deadline for sample in sampler.samples)  # type: ignore[operator]


def test_a_callback_that_raises_does_not_stop_the_measuring(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard.from_options(url="http://a/", interval_seconds=0.01, failure_threshold=1)
    worker = ScriptedWorker(replies(DOWN, then=OK))

    def broken(sampler: Sampler) -> None:
        raise RuntimeError("runner bug")

    async def scenario() -> Sampler:
        sampler = Sampler(guard, on_failed=broken, worker=worker)
        await sampler.start()
        while len(sampler.samples) < 3:
            await asyncio.sleep(0.01)
        await sampler.stop()
        return sampler

    sampler = asyncio.run(scenario())
    assert sampler.verdict == "Failed" and len(sampler.samples) >= 3
    assert "on_failed callback raised" in caplog.text


def test_an_unresolved_origin_is_refused_before_anything_starts() -> None:
    guard = Guard.from_options(url="http://a/", from_target="demo/client")
    with pytest.raises(ProbeError, match="probe's origin demo/client is not resolved to a process"):
        Sampler(guard)


def test_the_worker_runs_under_nsenter_only_for_another_namespace() -> None:
    assert ProbeWorker(None).argv[:2] == [sys.executable, "-I"]
    argv = ProbeWorker(321).argv
    assert argv[:3] == ["nsenter", "--net=/proc/321/ns/net", "--"]
    assert argv[-1].endswith("faultmesh/host/probe_worker.py") and "-I" in argv


def test_waiting_on_a_continuous_guard_ends_when_it_is_stopped() -> None:
    guard = Guard.from_options(url="http://a/", interval_seconds=0.01)
    worker = ScriptedWorker(replies(then=OK))

    async def scenario() -> tuple[str, Sampler]:
        sampler = Sampler(guard, worker=worker)
        await sampler.start()
        waiting = asyncio.ensure_future(sampler.wait())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # healthy and continuous: no verdict of its own
        await sampler.stop()
        return await asyncio.wait_for(waiting, 5), sampler

    verdict, sampler = asyncio.run(scenario())
    assert verdict == "Healthy" and not sampler.judge.completed and sampler.samples
