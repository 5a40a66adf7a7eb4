"""A run's report: one self-contained HTML page (and a PNG of its plot) rendered from the run journal alone.

The page shows the experiment and its outcome, each target's inject/recover times with their verification, the
fault windows, the events, and the steady-state probe over time: latency of passing samples, failed samples in
red along the top, fault windows shaded and labelled. It fetches nothing: the plot is inlined as a base64 PNG.
``faultmesh report RUN`` re-renders it from ``runs/<run-id>/journal.json``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from faultmesh.engine.steady import Judge, Sample, SampleSummary, Thresholds, summarize

from .state import state_dir as resolve_state_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

JOURNAL_VERSION = 1
JOURNAL_NAME = "journal.json"
HTML_NAME = "report.html"
PNG_NAME = "report.png"
#: The plot's size in inches and its resolution: 1000 × 420 pixels.
PLOT_INCHES = (10.0, 4.2)
PLOT_DPI = 100
EXIT_INVALID = 2
NEWEST_RUNS_SHOWN = 5

_OK_COLOR = "#1f6fb2"
_FAILED_COLOR = "#d62728"
_WINDOW_COLORS = ("#ff7f0e", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_OUTCOME_COLORS = {"Completed": "#2e7d32", "Recovered": "#2e7d32", "Deleted": "#555", "Running": "#1f6fb2",
                   "Aborted": "#b26a00", "Failed": "#c62828", "Interrupted": "#c62828"}
_RUN_STAMP = re.compile(r"-(\d{8}-\d{6})-[0-9a-f]{4}$")


class JournalError(ValueError):
    """A journal is not of the expected shape; each problem names its file and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# ---------------------------------------------------------------------------------------------------- reading


def load_journal(path: Path) -> dict[str, Any]:
    """Read and check a run journal; JournalError lists every problem (``journal.json: targets[0].x: ...``)."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JournalError([f"{path}: no such file"]) from None
    except OSError as error:
        raise JournalError([f"{path}: cannot read: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise JournalError([f"{name}: not UTF-8 text (byte {error.start})"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise JournalError([f"{name}: not JSON: line {error.lineno} column {error.colno}: {error.msg}"]) from None
    problems = journal_problems(data, name)
    if problems:
        raise JournalError(problems)
    assert isinstance(data, dict)
    return data


def journal_problems(data: Any, source: str = "journal") -> list[str]:
    """Everything wrong with a journal's shape, each as ``SOURCE: field.path: what is wrong``; empty if none."""
    checker = _Checker(source)
    checker.journal(data)
    return checker.problems


class _Checker:
    """Checks the journal schema (docs/host-mode.md); unknown fields are allowed, so newer writers stay readable."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def obj(self, path: str, value: Any) -> bool:
        if not isinstance(value, dict):
            self.fail(path, f"not an object ({_kind(value)})")
            return False
        return True

    def field(self, parent: Mapping[str, Any], path: str, key: str, expected: str, *, required: bool = True,
              nullable: bool = False) -> None:
        where = f"{path}.{key}" if path else key
        if key not in parent:
            if required:
                self.fail(where, "is missing")
            return
        value = parent[key]
        if value is None:
            if not nullable:
                self.fail(where, f"is null; {_EXPECTED[expected]} is required")
            return
        if not _CHECKS[expected](value):
            self.fail(where, f"not {_EXPECTED[expected]} ({_kind(value)})")

    def items(self, parent: Mapping[str, Any], key: str, prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
        where = f"{prefix}.{key}" if prefix else key
        if key not in parent:
            self.fail(where, "is missing")
            return
        value = parent[key]
        if not isinstance(value, list):
            self.fail(where, f"not a list ({_kind(value)})")
            return
        for index, item in enumerate(value):
            path = f"{where}[{index}]"
            if self.obj(path, item):
                yield path, item

    def journal(self, data: Any) -> None:
        if not self.obj("", data):
            return
        version = data.get("version")
        if "version" not in data:
            self.fail("version", "is missing")
        elif version != JOURNAL_VERSION:
            self.fail("version", f"{version!r} is not supported (this faultmesh reads version {JOURNAL_VERSION})")
            return
        self.field(data, "", "run", "text")
        if "experiment" not in data:
            self.fail("experiment", "is missing")
        elif self.obj("experiment", data["experiment"]):
            for key in ("kind", "namespace", "name"):
                self.field(data["experiment"], "experiment", key, "text")
            self.field(data["experiment"], "experiment", "uid", "string", required=False)
        self.field(data, "", "started_at", "number")
        self.field(data, "", "finished_at", "number", required=False, nullable=True)
        self.field(data, "", "outcome", "text")
        self.field(data, "", "reason", "string", required=False)
        for path, target in self.items(data, "targets"):
            self.field(target, path, "record", "text")
            for key in ("selector_key", "container_id", "error"):
                self.field(target, path, key, "string", required=False, nullable=True)
            for key in ("injected_at", "recovered_at"):
                self.field(target, path, key, "number", required=False, nullable=True)
            for key in ("injected_verified", "recovered_verified"):
                self.field(target, path, key, "boolean", required=False, nullable=True)
        for path, window in self.items(data, "windows"):
            self.field(window, path, "start", "number")
            self.field(window, path, "end", "number", required=False, nullable=True)
            self.field(window, path, "label", "string", required=False)
            start, end = window.get("start"), window.get("end")
            if isinstance(start, int | float) and isinstance(end, int | float) and end < start:
                self.fail(f"{path}.end", f"{end} is before the window's start {start}")
        for path, event in self.items(data, "events"):
            self.field(event, path, "at", "number")
            for key in ("type", "reason", "message"):
                self.field(event, path, key, "string", required=False)
        probe = data.get("probe")
        if probe is not None and self.obj("probe", probe):
            self.field(probe, "probe", "name", "string")
            self.field(probe, "probe", "kind", "string")
            self.field(probe, "probe", "target", "string", required=False)
            for key in ("interval_seconds", "timeout_seconds"):
                self.field(probe, "probe", key, "positive", required=False)
            for key in ("failure_threshold", "success_threshold"):
                self.field(probe, "probe", key, "count", required=False)
            self.field(probe, "probe", "verdict", "verdict")
            for path, sample in self.items(probe, "samples", "probe"):
                self.field(sample, path, "at", "number")
                self.field(sample, path, "ok", "boolean")
                self.field(sample, path, "latency_ms", "number", required=False, nullable=True)
                self.field(sample, path, "detail", "string", required=False)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _is_verdict(value: Any) -> bool:
    return value in ("Healthy", "Failed")


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "number": _is_number,
    "positive": _is_positive,
    "count": _is_count,
    "string": _is_string,
    "text": _is_text,
    "boolean": _is_boolean,
    "verdict": _is_verdict,
}
_EXPECTED = {
    "number": "a number",
    "positive": "a positive number",
    "count": "a whole number ≥ 1",
    "string": "a string",
    "text": "a non-empty string",
    "boolean": "true or false",
    "verdict": "Healthy or Failed",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value)[:40]}"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


# ---------------------------------------------------------------------------------------------------- the plot


def probe_samples(journal: Mapping[str, Any]) -> list[Sample]:
    """The probe's samples as engine samples, oldest first; empty without a probe."""
    probe = journal.get("probe") or {}
    samples = [
        Sample(at=float(s["at"]), ok=bool(s["ok"]), latency_ms=s.get("latency_ms"), detail=str(s.get("detail", "")))
        for s in probe.get("samples", [])
    ]
    return sorted(samples, key=lambda sample: sample.at)


def failed_at(journal: Mapping[str, Any]) -> float | None:
    """When the probe's failure threshold was reached (the run's steady state was lost); None if it never was."""
    probe = journal.get("probe")
    if not probe or probe.get("verdict") != "Failed":
        return None
    thresholds = Thresholds(mode="Continuous", failure_threshold=int(probe.get("failure_threshold", 3)))
    judge = Judge(thresholds, started_at=0.0)
    for sample in probe_samples(journal):
        judge.record(sample)
    return judge.completed_at if judge.verdict == "Failed" else None


def _window_spans(journal: Mapping[str, Any]) -> list[tuple[float, float, str, bool]]:
    """(start, end, label, open) per window; a window still open ends at the run's end or its last sample."""
    samples = probe_samples(journal)
    last = max([journal["started_at"], *(s.at for s in samples), *(w["start"] for w in journal["windows"])])
    horizon = journal.get("finished_at") or last
    spans = []
    for window in journal["windows"]:
        end = window.get("end")
        spans.append((float(window["start"]), float(end if end is not None else horizon),
                      str(window.get("label") or "fault"), end is None))
    return spans


def probe_figure(journal: Mapping[str, Any]) -> Figure:
    """The probe over time as a matplotlib Figure (Agg, no pyplot state); the journal must have a probe."""
    from matplotlib.artist import Artist
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    origin = float(journal["started_at"])
    probe = journal["probe"]
    samples = probe_samples(journal)
    figure = Figure(figsize=PLOT_INCHES, dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    figure.subplots_adjust(left=0.065, right=0.77, top=0.86, bottom=0.13)

    # A failed sample breaks the latency line (NaN), so no line is drawn across an outage.
    line = [(s.at - origin, s.latency_ms if s.ok and s.latency_ms is not None else math.nan) for s in samples]
    failing = [s.at - origin for s in samples if not s.ok]
    top = max([latency for _, latency in line if not math.isnan(latency)] + [1.0]) * 1.3
    axes.set_ylim(0, top)
    spans = _window_spans(journal)
    end = max([s.at for s in samples] + [span[1] for span in spans] + [journal.get("finished_at") or origin, origin])
    axes.set_xlim(0, max(end - origin, 1.0) * 1.02)

    colors: dict[str, str] = {}
    for index, (start, stop, label, _open) in enumerate(spans):
        color = colors.setdefault(label, _WINDOW_COLORS[len(colors) % len(_WINDOW_COLORS)])
        axes.axvspan(start - origin, stop - origin, color=color, alpha=0.18, linewidth=0, gid="fault-window")
        # Neighbouring labels take turns at two heights, so short windows side by side stay readable.
        height = 1.015 if index % 2 == 0 else 1.075
        axes.text((start + stop) / 2 - origin, height, _short(label), transform=axes.get_xaxis_transform(),
                  ha="center",
                  va="bottom", fontsize=8, color=color, clip_on=False, gid="fault-window-label")

    if line:
        axes.plot([at for at, _ in line], [latency for _, latency in line], color=_OK_COLOR, marker="o",
                  markersize=3, linewidth=1, gid="latency")
    if failing:
        # Failed samples have no meaningful latency: a red mark along the top of the plot.
        axes.plot(failing, [0.965] * len(failing), linestyle="none", marker="x",
                  markersize=7, markeredgewidth=2, color=_FAILED_COLOR, transform=axes.get_xaxis_transform(),
                  clip_on=False, gid="failed")
    lost = failed_at(journal)
    if lost is not None:
        axes.axvline(lost - origin, color=_FAILED_COLOR, linestyle="--", linewidth=1, gid="steady-state-lost")

    axes.set_xlabel(f"seconds since the run started ({_clock(origin)})")
    axes.set_ylabel("probe latency (ms)")
    axes.grid(True, alpha=0.3)
    figure.suptitle(f"{probe.get('kind', 'probe')} probe {probe.get('name', '')}: {probe.get('target', '')} — "
                    f"{probe.get('verdict')}", fontsize=10, x=0.07, ha="left", y=0.975)
    handles: list[Artist] = [
        Line2D([], [], color=_OK_COLOR, marker="o", markersize=3, label="latency of a passing sample"),
        Line2D([], [], color=_FAILED_COLOR, marker="x", linestyle="none", label="failed sample"),
    ]
    handles += [Patch(color=color, alpha=0.3, label=_short(label)) for label, color in colors.items()]
    if lost is not None:
        handles.append(Line2D([], [], color=_FAILED_COLOR, linestyle="--", label="steady state lost"))
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return figure


def _short(label: str, most: int = 40) -> str:
    return label if len(label) <= most else label[: most - 1] + "…"


def plot_png(journal: Mapping[str, Any]) -> bytes:
    """The probe plot as PNG bytes, PLOT_INCHES × PLOT_DPI pixels."""
    buffer = io.BytesIO()
    probe_figure(journal).savefig(buffer, format="png", dpi=PLOT_DPI)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------- the page


def render(journal: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    """Write ``report.html`` (and ``report.png`` when the run had a probe) into ``out_dir``; return their paths.

    Raises JournalError when the journal is not of the expected shape. A run without a probe gets no PNG (an
    old one is removed), and its page says so.
    """
    problems = journal_problems(journal)
    if problems:
        raise JournalError(problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, png_path = out_dir / HTML_NAME, out_dir / PNG_NAME
    png = plot_png(journal) if journal.get("probe") else None
    if png is None:
        png_path.unlink(missing_ok=True)
    else:
        _write_atomically(png_path, png)
    _write_atomically(html_path, page(journal, png).encode())
    return html_path, png_path if png is not None else None


def page(journal: Mapping[str, Any], png: bytes | None) -> str:
    """The report as one HTML document; ``png`` (the plot) is inlined when given."""
    experiment = journal["experiment"]
    title = f"{experiment['kind']} {experiment['namespace']}/{experiment['name']}"
    origin = float(journal["started_at"])
    outcome = str(journal["outcome"])
    finished = journal.get("finished_at")
    lasted = f"{finished - origin:.1f} s" if finished is not None else "still running"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)} — faultmesh report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<table class="facts">',
        _fact("Run", journal["run"]),
        _fact("Outcome", f'<span class="outcome" style="background:{_OUTCOME_COLORS.get(outcome, "#555")}">'
                         f"{_e(outcome)}</span> {_e(journal.get('reason', ''))}", raw=True),
        _fact("Started", _clock(origin)),
        _fact("Finished", _clock(finished) if finished is not None else "—"),
        _fact("Lasted", lasted),
        _fact("Experiment uid", experiment.get("uid") or "—"),
        "</table>",
        "<h2>Steady state</h2>",
        _probe_section(journal, png),
        "<h2>Targets</h2>",
        _targets_table(journal),
        "<h2>Fault windows</h2>",
        _windows_table(journal),
        "<h2>Events</h2>",
        _events_table(journal),
        f'<p class="foot">Rendered by faultmesh from {_e(JOURNAL_NAME)}.</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _probe_section(journal: Mapping[str, Any], png: bytes | None) -> str:
    probe = journal.get("probe")
    if not probe:
        return '<p class="none">This run had no steady-state probe, so there is nothing to plot.</p>'
    samples = probe_samples(journal)
    verdict = probe["verdict"]
    rows = [
        _fact("Probe", f"{probe.get('kind', '')} {probe['name']}: {probe.get('target', '')}"),
        _fact("Checks", f"every {_g(probe.get('interval_seconds'))} s, timeout {_g(probe.get('timeout_seconds'))} s, "
                        f"fails after {probe.get('failure_threshold', '?')} failures in a row"),
        _fact("Verdict", f'<span class="verdict {verdict.lower()}">{_e(verdict)}</span>', raw=True),
        _fact("All samples", summarize(samples).sentence()),
    ]
    lost = failed_at(journal)
    if lost is not None:
        rows.append(_fact("Steady state lost", f"at +{lost - float(journal['started_at']):.1f} s"))
    body = ['<table class="facts">', *rows, "</table>"]
    if png is not None:
        data = base64.b64encode(png).decode()
        body.append(f'<img class="plot" alt="probe latency over time, fault windows shaded" '
                    f'width="{int(PLOT_INCHES[0] * PLOT_DPI)}" height="{int(PLOT_INCHES[1] * PLOT_DPI)}" '
                    f'src="data:image/png;base64,{data}">')
    body.append(_effects_table(journal, samples))
    failures = [s for s in samples if not s.ok]
    if failures:
        body.append(f"<details><summary>{len(failures)} failed sample(s)</summary><table><tr><th>at</th>"
                    "<th>detail</th></tr>")
        origin = float(journal["started_at"])
        body += [f"<tr><td>+{s.at - origin:.1f} s</td><td>{_e(s.detail)}</td></tr>" for s in failures[:500]]
        body.append("</table></details>")
    return "\n".join(body)


def _effects_table(journal: Mapping[str, Any], samples: Sequence[Sample]) -> str:
    """The probe before any fault, inside each window, and after the last one: each fault's effect at a glance."""
    spans = _window_spans(journal)
    rows: list[tuple[str, SampleSummary]] = []
    if spans:
        first = min(span[0] for span in spans)
        last = max(span[1] for span in spans)
        rows.append(("before the first fault", summarize([s for s in samples if s.at < first])))
        origin = float(journal["started_at"])
        rows += [(f"{label} (+{start - origin:.1f} s … +{stop - origin:.1f} s)", summarize(samples, start, stop))
                 for start, stop, label, _open in spans]
        rows.append(("after the last fault", summarize([s for s in samples if s.at > last])))
    else:
        rows.append(("whole run (no fault window)", summarize(samples)))
    lines = ["<table><tr><th>stretch</th><th>samples</th><th>passed</th><th>median latency</th>"
             "<th>p95 latency</th></tr>"]
    for label, summary in rows:
        share = f"{100 * summary.ok / summary.count:.0f}%" if summary.count else "—"
        lines.append(f"<tr><td>{_e(label)}</td><td>{summary.count}</td><td>{share}</td>"
                     f"<td>{_ms(summary.latency_median_ms)}</td><td>{_ms(summary.latency_p95_ms)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _targets_table(journal: Mapping[str, Any]) -> str:
    targets = journal["targets"]
    if not targets:
        return '<p class="none">No target was selected.</p>'
    origin = float(journal["started_at"])
    lines = ["<table><tr><th>record</th><th>container</th><th>injected</th><th>verified</th><th>recovered</th>"
             "<th>verified</th><th>error</th></tr>"]
    for target in targets:
        lines.append(
            f"<tr><td>{_e(target['record'])}</td><td>{_e(target.get('container_id') or '—')}</td>"
            f"<td>{_at(target.get('injected_at'), origin)}</td>{_flag(target.get('injected_verified'))}"
            f"<td>{_at(target.get('recovered_at'), origin)}</td>{_flag(target.get('recovered_verified'))}"
            f"<td>{_e(target.get('error') or '')}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _windows_table(journal: Mapping[str, Any]) -> str:
    if not journal["windows"]:
        return '<p class="none">No fault was in effect during this run.</p>'
    origin = float(journal["started_at"])
    lines = ['<table class="windows"><tr><th>fault</th><th>from</th><th>to</th><th>lasted</th></tr>']
    for window in journal["windows"]:
        start, end = float(window["start"]), window.get("end")
        lasted = f"{end - start:.1f} s" if end is not None else "open"
        lines.append(f"<tr><td>{_e(window.get('label') or 'fault')}</td><td>{_at(start, origin)}</td>"
                     f"<td>{_at(end, origin)}</td><td>{lasted}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _events_table(journal: Mapping[str, Any]) -> str:
    events = sorted(journal["events"], key=lambda event: event["at"])
    if not events:
        return '<p class="none">No events were recorded.</p>'
    origin = float(journal["started_at"])
    lines = ["<table><tr><th>at</th><th>type</th><th>reason</th><th>message</th></tr>"]
    for event in events:
        kind = str(event.get("type", ""))
        row = '<tr class="warning">' if kind == "Warning" else "<tr>"
        lines.append(f'{row}<td>{_at(event["at"], origin)}</td>'
                     f"<td>{_e(kind)}</td><td>{_e(event.get('reason', ''))}</td><td>{_e(event.get('message', ''))}</td>"
                     "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1060px;color:#222;
padding:0 1em}
h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
table.facts th{width:10em}tr.warning td{background:#fff4e5}
.outcome{color:#fff;border-radius:3px;padding:.05em .5em;font-weight:600}
.verdict.healthy{color:#2e7d32;font-weight:600}.verdict.failed{color:#c62828;font-weight:600}
td.yes{color:#2e7d32}td.no{color:#c62828}.none{color:#666;font-style:italic}.foot{color:#888;font-size:.8em}
img.plot{max-width:100%;height:auto;border:1px solid #eee}
"""


def _fact(name: str, value: Any, raw: bool = False) -> str:
    return f"<tr><th>{_e(name)}</th><td>{value if raw else _e(value)}</td></tr>"


def _flag(value: Any) -> str:
    if value is True:
        return '<td class="yes">✓ yes</td>'
    if value is False:
        return '<td class="no">✗ no</td>'
    return "<td>—</td>"


def _at(value: Any, origin: float) -> str:
    if value is None:
        return "—"
    return f'{_e(_clock(float(value)))} <span class="foot">(+{float(value) - origin:.1f} s)</span>'


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _g(value: Any) -> str:
    return f"{value:g}" if _is_number(value) else "?"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------------- the command


class RunNotFoundError(LookupError):
    """RUN names no run; the message lists the newest runs."""


def run_ids(runs_dir: Path) -> list[str]:
    """The run ids under ``runs_dir``, newest first (by the time in the id, else by modification time)."""
    if not runs_dir.is_dir():
        return []
    entries = [entry for entry in runs_dir.iterdir() if entry.is_dir() and not entry.name.startswith(".")]

    def newest_first(entry: Path) -> tuple[str, float]:
        stamp = _RUN_STAMP.search(entry.name)
        return (stamp.group(1) if stamp else "", entry.stat().st_mtime)

    return [entry.name for entry in sorted(entries, key=newest_first, reverse=True)]


def resolve_run(run: str, state_dir: Path) -> Path:
    """The directory of run ``run``: a path to a run directory (or its journal), a run id, or a unique id prefix."""
    given = Path(run)
    if given.is_file() and given.name == JOURNAL_NAME:
        return given.parent
    if given.is_dir() and (given / JOURNAL_NAME).exists():
        return given
    runs_dir = state_dir / "runs"
    known = run_ids(runs_dir)
    if "/" not in run and run in known:
        return runs_dir / run
    matches = [run_id for run_id in known if run and "/" not in run and run_id.startswith(run)]
    if len(matches) == 1:
        return runs_dir / matches[0]
    if len(matches) > 1:
        listed = ", ".join(matches[:NEWEST_RUNS_SHOWN]) + (", …" if len(matches) > NEWEST_RUNS_SHOWN else "")
        raise RunNotFoundError(f"{run!r} matches {len(matches)} runs ({listed}); give more of the run id")
    if given.is_dir():
        raise RunNotFoundError(f"{run} is a directory without a {JOURNAL_NAME}, not a run directory")
    if not known:
        raise RunNotFoundError(f"no run {run!r}: there are no runs under {runs_dir}")
    newest = ", ".join(known[:NEWEST_RUNS_SHOWN])
    raise RunNotFoundError(f"no run {run!r} under {runs_dir}; the newest: {newest}")


def report_command(
    run: Annotated[str, typer.Argument(metavar="RUN",
                                       help="A run id (or a unique prefix of one), or the path of a run directory.")],
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Host mode's state; default $FAULTMESH_STATE_DIR or /var/lib/faultmesh."),
    ] = None,
) -> None:
    """Render a run's report again (report.html, report.png) from its journal, and print where they are."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    root = resolve_state_dir(state_dir)
    try:
        run_dir = resolve_run(run, root)
        journal = load_journal(run_dir / JOURNAL_NAME)
        html_path, png_path = render(journal, run_dir)
    except RunNotFoundError as error:
        err.print(f"[red]✗[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except JournalError as error:
        for problem in error.problems:
            err.print(f"[red]✗[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as error:
        err.print(f"[red]✗[/red] cannot write the report: {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    out.print(str(html_path), highlight=False)
    if png_path is not None:
        out.print(str(png_path), highlight=False)
    else:
        err.print("[dim]no probe in this run, so no plot (report.png)[/dim]", highlight=False)
