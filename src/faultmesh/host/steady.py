"""Steady-state guard for host mode: probe an application while a fault is in, and abort when it breaks.

A ``Guard`` is what to probe and how to judge it. It comes either from a Chaos Mesh StatusCheck (an HTTP probe;
the manifest stays a valid StatusCheck) or from command-line / REST options, which may also name a command.
A probe can run from inside a target's network namespace (``from_pid``), since host-mode targets live in
containers and network namespaces that the host often cannot route to. This process never joins a namespace:
a small worker process (``faultmesh.host.probe_worker``) is started under ``nsenter`` and runs the probes.

The ``Sampler`` probes on the guard's interval, keeps every sample for the run journal, and feeds them to the
pure judge (``faultmesh.engine.steady``); when the judge says Failed it calls ``on_failed`` once, and the runner
aborts and recovers the experiment. Unlike a Chaos Mesh StatusCheck it keeps measuring after the verdict until
stopped, so the report shows the application coming back; those later samples do not change the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from faultmesh.api.base import quote
from faultmesh.api.statuscheck import StatusCheck, StatusCheckSpec, request_uri_problem, status_code_problem
from faultmesh.api.types import parse_go_duration
from faultmesh.engine.steady import (
    CheckMode,
    Judge,
    Sample,
    SampleSummary,
    Thresholds,
    Verdict,
    status_code_matches,
    summarize,
    thresholds_problems,
)

from . import probe_worker

log = logging.getLogger(__name__)

ProbeKind = Literal["HTTP", "Command"]

#: Annotation on a StatusCheck naming the host-mode target (``namespace/name``) whose network namespace the
#: probe runs from; the runner resolves it to a process with ``Guard.resolved``.
PROBE_FROM_ANNOTATION = "host.faultmesh.io/probe-from"
#: The criteria used when options give a URL but no status code: any 2xx.
DEFAULT_STATUS_CODE = "200-299"
#: How long the worker may take to come up (a Python start on a busy machine) and, beyond a probe's own
#: timeout, to answer, before it is taken for hung and killed.
WORKER_START_SECONDS = 15.0
WORKER_GRACE_SECONDS = 3.0
_OUTPUT_IN_DETAIL = 120


class GuardError(ValueError):
    """A guard cannot be built; each problem names its field (``intervalSeconds: 0 is not ...``)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class ProbeError(RuntimeError):
    """The probe cannot run at all (its namespace's process is gone, the worker does not start)."""


@dataclass(frozen=True)
class HttpProbe:
    """One HTTP request per sample; it passes when the status code meets ``status_code`` (``200``, ``200-299``)."""

    url: str
    status_code: str = DEFAULT_STATUS_CODE
    method: str = "GET"
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    body: str | None = None

    def request(self, timeout: float) -> dict[str, Any]:
        return {"kind": "http", "url": self.url, "method": self.method, "body": self.body, "timeout": timeout,
                "headers": {name: list(values) for name, values in self.headers.items()}}

    def judge(self, reply: Mapping[str, Any]) -> tuple[bool, str]:
        status = reply["status"]
        if status_code_matches(self.status_code, status):
            return True, str(status)
        return False, f"unexpected status code: {status}"

    def describe(self) -> str:
        return self.url if self.method == "GET" else f"{self.method} {self.url}"


@dataclass(frozen=True)
class CommandProbe:
    """A command per sample; it passes when it exits 0 within the timeout."""

    argv: tuple[str, ...]

    def request(self, timeout: float) -> dict[str, Any]:
        return {"kind": "command", "argv": list(self.argv), "timeout": timeout}

    def judge(self, reply: Mapping[str, Any]) -> tuple[bool, str]:
        code = reply["exit_code"]
        output = str(reply.get("output") or "").splitlines()
        last_line = output[-1][:_OUTPUT_IN_DETAIL] if output else ""
        if code == 0:
            return True, "exit 0"
        return False, f"exit {code}: {last_line}" if last_line else f"exit {code}"

    def describe(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class Guard:
    """A steady-state probe with its StatusCheck numbers; seconds may be fractional when given as options."""

    name: str
    probe: HttpProbe | CommandProbe
    mode: CheckMode = "Continuous"
    interval_seconds: float = 1.0
    timeout_seconds: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1
    records_history_limit: int = 100
    duration_seconds: float | None = None
    #: Run the probe from this process's network namespace; None runs it from the host's.
    from_pid: int | None = None
    #: The host-mode target (``namespace/name``) to probe from, until the runner resolves it to ``from_pid``.
    from_target: str | None = None

    def __post_init__(self) -> None:
        problems = _guard_problems(self)
        if problems:
            raise GuardError([f"{self.name}: {problem}" if self.name else problem for problem in problems])

    @property
    def kind(self) -> ProbeKind:
        return "HTTP" if isinstance(self.probe, HttpProbe) else "Command"

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            mode=self.mode,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            records_history_limit=self.records_history_limit,
            duration_seconds=self.duration_seconds,
        )

    def describe(self) -> str:
        """What is probed, from where: ``http://10.0.0.2/ (from demo/client)``."""
        where = self.from_target or (f"pid {self.from_pid}" if self.from_pid is not None else "")
        return f"{self.probe.describe()} (from {where})" if where else self.probe.describe()

    def resolved(self, pid: int, target: str | None = None) -> Guard:
        """This guard probing from process ``pid``'s network namespace (``target`` names it for people)."""
        return replace(self, from_pid=pid, from_target=target or self.from_target)

    def journal_header(self) -> dict[str, Any]:
        """The run journal's ``probe`` object without samples and verdict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.describe(),
            "interval_seconds": self.interval_seconds,
            "timeout_seconds": self.timeout_seconds,
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
        }

    @classmethod
    def from_status_check(cls, check: StatusCheck, from_pid: int | None = None) -> Guard:
        """A guard from a StatusCheck manifest; the annotation ``host.faultmesh.io/probe-from`` names its origin."""
        annotations = check.metadata.annotations or {}
        return cls.from_spec(
            check.spec,
            name=check.metadata.name or "statuscheck",
            from_pid=from_pid,
            from_target=annotations.get(PROBE_FROM_ANNOTATION) or None,
        )

    @classmethod
    def from_spec(
        cls, spec: StatusCheckSpec, name: str, from_pid: int | None = None, from_target: str | None = None
    ) -> Guard:
        """A guard from a StatusCheckSpec (also a Workflow's StatusCheck template); the probe is its ``http``."""
        if spec.http is None:
            raise GuardError([f"{name}: spec.http: is required (host mode probes StatusChecks over HTTP)"])
        duration = None
        if spec.duration:
            try:
                duration = parse_go_duration(spec.duration) / 1e9
            except ValueError:
                raise GuardError([f"{name}: spec.duration: {spec.duration!r} is not a duration"]) from None
        probe = HttpProbe(
            url=spec.http.url,
            status_code=spec.http.criteria.status_code,
            method=spec.http.method,
            headers={key: tuple(values) for key, values in (spec.http.headers or {}).items()},
            body=spec.http.body,
        )
        try:
            return cls(
                name=name,
                probe=probe,
                mode=spec.mode or "Synchronous",
                interval_seconds=spec.interval_seconds,
                timeout_seconds=spec.timeout_seconds,
                failure_threshold=spec.failure_threshold,
                success_threshold=spec.success_threshold,
                records_history_limit=spec.records_history_limit,
                duration_seconds=duration,
                from_pid=from_pid,
                from_target=from_target,
            )
        except GuardError as error:
            problems = [problem.replace(f"{name}: ", f"{name}: spec.", 1) for problem in error.problems]
            raise GuardError(problems) from None

    @classmethod
    def from_options(
        cls,
        *,
        name: str = "probe",
        url: str | None = None,
        command: Sequence[str] | None = None,
        method: str = "GET",
        headers: Mapping[str, Sequence[str]] | None = None,
        body: str | None = None,
        status_code: str | None = None,
        mode: CheckMode = "Continuous",
        interval_seconds: float = 1.0,
        timeout_seconds: float = 1.0,
        failure_threshold: int = 3,
        success_threshold: int = 1,
        records_history_limit: int = 100,
        duration: str | None = None,
        from_pid: int | None = None,
        from_target: str | None = None,
    ) -> Guard:
        """A guard from CLI or REST options: exactly one of ``url`` and ``command``.

        Problems name the StatusCheck field each option stands for (``url``, ``intervalSeconds``, ...), all at once.
        """
        problems: list[str] = []
        if (url is None) == (command is None):
            problems.append("url, command: give exactly one (an HTTP URL to request, or a command to run)")
        if command is not None and (not command or not all(isinstance(part, str) and part for part in command)):
            problems.append(f"command: {list(command)!r} is not a non-empty list of non-empty strings")
        if url is None and status_code is not None:
            problems.append("criteria.statusCode: applies to an HTTP probe (url) only")
        duration_seconds = None
        if duration:
            try:
                duration_seconds = parse_go_duration(duration) / 1e9
            except ValueError:
                problems.append(f"duration: {duration!r} is not a duration (e.g. 30s, 5m)")
        if problems:
            raise GuardError([f"{name}: {problem}" for problem in problems])
        probe: HttpProbe | CommandProbe
        if url is not None:
            probe = HttpProbe(
                url=url,
                status_code=status_code or DEFAULT_STATUS_CODE,
                method=method,
                headers={key: tuple(values) for key, values in (headers or {}).items()},
                body=body,
            )
        else:
            probe = CommandProbe(tuple(command or ()))
        return cls(
            name=name,
            probe=probe,
            mode=mode,
            interval_seconds=interval_seconds,
            timeout_seconds=timeout_seconds,
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            records_history_limit=records_history_limit,
            duration_seconds=duration_seconds,
            from_pid=from_pid,
            from_target=from_target,
        )


def _guard_problems(guard: Guard) -> list[str]:
    problems = []
    for name, value in (("intervalSeconds", guard.interval_seconds), ("timeoutSeconds", guard.timeout_seconds)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            problems.append(f"{name}: {value!r} is not a positive number of seconds")
    problems += thresholds_problems(
        mode=guard.mode,
        failure_threshold=guard.failure_threshold,
        success_threshold=guard.success_threshold,
        records_history_limit=guard.records_history_limit,
        duration_seconds=guard.duration_seconds,
    )
    if isinstance(guard.probe, HttpProbe):
        url = guard.probe.url
        why = request_uri_problem(url) if url else "is required (e.g. http://10.0.0.2:8080/health)"
        if why is None and not url.lower().startswith(("http://", "https://")):
            why = "is not an http:// or https:// URL"
        if why:
            problems.append(f"http.url: {quote(url)} {why}" if url else f"http.url: {why}")
        code_problem = status_code_problem(guard.probe.status_code)
        if code_problem:
            problems.append(f"http.criteria.statusCode: {code_problem}")
        if guard.probe.method not in ("GET", "POST"):
            problems.append(f"http.method: {guard.probe.method!r} is neither GET nor POST")
    if guard.from_pid is not None and (isinstance(guard.from_pid, bool) or not isinstance(guard.from_pid, int)
                                       or guard.from_pid < 1):
        problems.append(f"fromPid: {guard.from_pid!r} is not a process id")
    return problems



class ProbeWorker:
    """One probe worker process, in the host's network namespace or in process ``from_pid``'s."""

    def __init__(self, from_pid: int | None = None) -> None:
        self.from_pid = from_pid
        self.process: asyncio.subprocess.Process | None = None
        #: The worker's network namespace inode, as it reported on start.
        self.netns: int | None = None
        self._next_id = 0
        self._busy = False

    @property
    def argv(self) -> list[str]:
        # Started by path and isolated (-I): the worker needs the standard library only, and comes up fast.
        python = [sys.executable, "-I", str(Path(probe_worker.__file__).resolve())]
        if self.from_pid is None:
            return python
        return ["nsenter", f"--net=/proc/{self.from_pid}/ns/net", "--", *python]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start the worker and wait for it to report ready; raises ProbeError with the reason it could not."""
        if self.from_pid is not None and not Path(f"/proc/{self.from_pid}/ns/net").exists():
            raise ProbeError(f"cannot probe from process {self.from_pid}: no such process")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as error:
            raise ProbeError(f"cannot start the probe worker ({self.argv[0]}): {error.strerror or error}") from None
        try:
            ready = await self._read_reply(WORKER_START_SECONDS)
        except ProbeError as error:
            raise ProbeError(f"{self._where()}: the probe worker did not start: {error}") from None
        self.netns = ready.get("netns")

    async def run(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one probe request and return the worker's reply; ProbeError when the worker died or hung."""
        if self.process is None or self.process.stdin is None or not self.running:
            raise ProbeError("the probe worker is not running")
        self._next_id += 1
        message = {**request, "id": self._next_id}
        # Busy until the reply is read; a caller cancelled meanwhile leaves it set, so close() does not wait.
        self._busy = True
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self._busy = False
            raise ProbeError(f"the probe worker exited{await self._stderr_tail()}") from None
        while True:
            reply = await self._read_reply(timeout + WORKER_GRACE_SECONDS)
            if reply.get("id") == self._next_id:
                self._busy = False
                return reply

    async def close(self) -> None:
        """Stop the worker: end its input, then SIGTERM, then SIGKILL, and reap it.

        An idle worker exits at the end of its input. One still busy with a probe (its caller was cancelled) is
        sent SIGTERM at once, which also kills a probe command it is running.
        """
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        actions = (process.terminate, process.kill) if self._busy else (None, process.terminate, process.kill)
        self._busy = False
        for action in actions:
            if process.returncode is not None:
                break
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), WORKER_GRACE_SECONDS)
        await process.wait()

    async def _read_reply(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            await self.close()
            raise ProbeError(f"the probe worker did not answer within {timeout:g} s and was stopped") from None
        if not line:
            tail = await self._stderr_tail()
            await self.close()
            raise ProbeError(f"the probe worker exited{tail}")
        try:
            reply = json.loads(line)
        except ValueError:
            await self.close()
            raise ProbeError(f"the probe worker wrote {line[:80]!r}, not a JSON line") from None
        if not isinstance(reply, dict):
            await self.close()
            raise ProbeError(f"the probe worker wrote {line[:80]!r}, not a JSON object")
        return reply

    async def _stderr_tail(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        try:
            text = await asyncio.wait_for(self.process.stderr.read(4096), 1.0)
        except TimeoutError:
            return ""
        lines = text.decode(errors="replace").strip().splitlines()
        return f": {lines[-1]}" if lines else ""

    def _where(self) -> str:
        return "host network namespace" if self.from_pid is None else f"network namespace of process {self.from_pid}"


FailedCallback = Callable[["Sampler"], Awaitable[None] | None]
SampleCallback = Callable[[Sample], Awaitable[None] | None]


class Sampler:
    """Probes a guard on its interval (the first sample at once), judges the samples, reports a failure once.

    Use it inside a running asyncio loop: ``await sampler.start()`` ... ``await sampler.stop()``, or
    ``async with Sampler(guard, on_failed=...)``. A sample starts every ``interval_seconds``; a probe that
    overruns skips the ticks it missed, as a Go ticker does. A sample that cannot run (the worker died and cannot
    be restarted) counts as a failure with the reason in its detail.
    """

    def __init__(
        self,
        guard: Guard,
        on_failed: FailedCallback | None = None,
        on_sample: SampleCallback | None = None,
        clock: Callable[[], float] = time.time,
        worker: ProbeWorker | None = None,
    ) -> None:
        _require_resolved(guard)
        self.guard = guard
        self.on_failed = on_failed
        self.on_sample = on_sample
        self.clock = clock
        self.started_at: float | None = None
        self.judge = Judge(guard.thresholds, started_at=clock())
        self._samples: list[Sample] = []
        self._worker = worker if worker is not None else ProbeWorker(guard.from_pid)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._completed = asyncio.Event()
        self._ended = asyncio.Event()

    @property
    def samples(self) -> list[Sample]:
        """Every sample taken so far, oldest first (a copy)."""
        return list(self._samples)

    @property
    def verdict(self) -> Verdict:
        return self.judge.verdict

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the worker and the sampling loop; raises ProbeError when the probe cannot run at all."""
        if self._task is not None:
            raise RuntimeError("a Sampler starts once")
        await self._worker.start()
        self.started_at = self.clock()
        self.judge = Judge(self.guard.thresholds, started_at=self.started_at)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"sampler {self.guard.name}")

    async def stop(self) -> None:
        """Stop sampling and the worker; safe to call more than once, and after the loop ended on its own."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                if not self._task.done():
                    self._task.cancel()
                await self._task
        await self._worker.close()

    async def wait(self) -> Verdict:
        """Wait until the judgment completes (a Synchronous verdict, the failure threshold or the duration).

        Returns early, with the verdict so far, when sampling ends otherwise (``stop()``).
        """
        waiters = [asyncio.ensure_future(event.wait()) for event in (self._completed, self._ended)]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.judge.verdict

    def journal_probe(self) -> dict[str, Any]:
        """The run journal's ``probe`` object: the guard, every sample, the verdict."""
        return {
            **self.guard.journal_header(),
            "samples": [sample.to_json() for sample in self._samples],
            "verdict": self.judge.verdict,
        }

    def summary(self, start: float | None = None, end: float | None = None) -> SampleSummary:
        """How the probe fared between ``start`` and ``end`` (e.g. inside one fault window)."""
        return summarize(self._samples, start, end)

    async def __aenter__(self) -> Sampler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _loop(self) -> None:
        try:
            await self._sample_until_stopped()
        finally:
            self._ended.set()

    async def _sample_until_stopped(self) -> None:
        interval = self.guard.interval_seconds
        next_at = self.clock()
        while not self._stopping.is_set():
            if self.judge.tick(self.clock()):
                self._completed.set()
            deadline = self.judge.deadline
            if deadline is not None and self.clock() > deadline:
                return  # the guard's duration is over: it runs no longer, as a StatusCheck would not
            sample = await self.sample_once()
            self._samples.append(sample)
            was_failed = self.judge.verdict == "Failed"
            if self.judge.record(sample) and self.judge.completed:
                self._completed.set()
            await _call(self.on_sample, sample, "on_sample")
            if self.judge.verdict == "Failed" and not was_failed:
                log.warning("steady-state guard %s failed: %d failures in a row, last: %s",
                            self.guard.name, self.judge.run_length, sample.detail)
                await _call(self.on_failed, self, "on_failed")
            now = self.clock()
            next_at += interval
            if next_at <= now:
                next_at += math.ceil((now - next_at) / interval + 1e-9) * interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), next_at - now)

    async def sample_once(self) -> Sample:
        """Run the probe once now and return the sample (the judge does not see it unless the loop records it)."""
        return await take_sample(self._worker, self.guard, self.clock)


async def take_sample(worker: ProbeWorker, guard: Guard, clock: Callable[[], float] = time.time) -> Sample:
    """Run the guard's probe once through ``worker`` (restarting it if it died); failures become failed samples."""
    at = clock()
    timeout = guard.timeout_seconds
    try:
        if not worker.running:
            await worker.start()
        reply = await worker.run(guard.probe.request(timeout), timeout)
    except ProbeError as error:
        return Sample(at=at, ok=False, latency_ms=None, detail=str(error))
    latency = reply.get("latency_ms")
    latency_ms = float(latency) if isinstance(latency, int | float) else None
    if reply.get("error"):
        return Sample(at=at, ok=False, latency_ms=latency_ms, detail=str(reply["error"]))
    try:
        ok, detail = guard.probe.judge(reply)
    except (KeyError, TypeError):
        return Sample(at=at, ok=False, latency_ms=latency_ms, detail=f"the probe worker answered {reply!r}")
    return Sample(at=at, ok=ok, latency_ms=latency_ms, detail=detail)


def _require_resolved(guard: Guard) -> None:
    if guard.from_target is not None and guard.from_pid is None:
        raise ProbeError(f"{guard.name}: the probe's origin {guard.from_target} is not resolved to a process")


async def _call(callback: Callable[[Any], Awaitable[None] | None] | None, argument: Any, what: str) -> None:
    if callback is None:
        return
    try:
        result = callback(argument)
        if inspect.isawaitable(result):
            await result
    except Exception:  # the caller's bug must not stop the measuring; it is logged
        log.exception("steady-state %s callback raised", what)


@dataclass(frozen=True)
class Baseline:
    """The steady state measured before any fault: the samples and their summary."""

    samples: tuple[Sample, ...]
    summary: SampleSummary

    def sentence(self) -> str:
        return f"steady state: {self.summary.sentence()}"


async def measure_baseline(guard: Guard, count: int = 10, interval_seconds: float | None = None) -> Baseline:
    """Probe ``count`` times before the fault (at the guard's interval unless told otherwise), without judging."""
    if count < 1:
        raise ValueError("a baseline needs at least one sample")
    _require_resolved(guard)
    interval = guard.interval_seconds if interval_seconds is None else interval_seconds
    worker = ProbeWorker(guard.from_pid)
    samples: list[Sample] = []
    await worker.start()
    try:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for index in range(count):
            samples.append(await take_sample(worker, guard))
            if index + 1 < count:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - loop.time()))
    finally:
        await worker.close()
    return Baseline(tuple(samples), summarize(samples))


def run_baseline(guard: Guard, count: int = 10, interval_seconds: float | None = None) -> Baseline:
    """``measure_baseline`` for callers without an event loop."""
    return asyncio.run(measure_baseline(guard, count, interval_seconds))
