"""A run's journal file (``runs/<run-id>/journal.json``): what happened, when, and what the probe saw.

The runner rewrites it as the run goes (atomically: write beside, then rename), so a run killed at any
moment leaves a readable journal; the watchdog finishes it when it recovers what the runner left behind.
The report (:mod:`faultmesh.host.report`) renders from this file alone.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1
JOURNAL_NAME = "journal.json"


def new_run_id(kind: str, name: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{kind.lower()}-{name}-{stamp}-{secrets.token_hex(2)}"


@dataclass
class TargetTimes:
    record: str
    selector_key: str
    container_id: str
    injected_at: float | None = None
    injected_verified: bool = False
    recovered_at: float | None = None
    recovered_verified: bool = False
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunJournal:
    """The journal of one run, kept in memory and written out on every change."""

    path: Path
    run: str
    experiment: dict[str, str]
    started_at: float
    targets: list[TargetTimes] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    finished_at: float | None = None
    outcome: str = "Running"
    reason: str = ""

    def target(self, record: str) -> TargetTimes:
        for times in self.targets:
            if times.record == record:
                return times
        raise KeyError(record)

    def event(self, at: float, type_: str, reason: str, message: str) -> None:
        self.events.append({"at": at, "type": type_, "reason": reason, "message": message})

    def open_window(self, at: float, label: str) -> None:
        if not self.windows or self.windows[-1]["end"] is not None:
            self.windows.append({"start": at, "end": None, "label": label})

    def close_window(self, at: float) -> None:
        if self.windows and self.windows[-1]["end"] is None:
            self.windows[-1]["end"] = at

    def finish(self, at: float, outcome: str, reason: str) -> None:
        self.close_window(at)
        self.finished_at, self.outcome, self.reason = at, outcome, reason

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "run": self.run,
            "experiment": self.experiment,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "targets": [t.to_json() for t in self.targets],
            "windows": self.windows,
            "probe": self.probe,
            "events": self.events,
        }

    def write(self) -> None:
        write_json(self.path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> RunJournal:
        data = json.loads(path.read_text())
        journal = cls(path, data["run"], data["experiment"], data["started_at"])
        journal.targets = [TargetTimes(**t) for t in data.get("targets", [])]
        journal.windows = list(data.get("windows", []))
        journal.events = list(data.get("events", []))
        journal.probe = data.get("probe")
        journal.finished_at = data.get("finished_at")
        journal.outcome = data.get("outcome", "Running")
        journal.reason = data.get("reason", "")
        return journal


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
