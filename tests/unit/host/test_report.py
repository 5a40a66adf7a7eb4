"""Run reports: the journal's shape is checked with field paths; the page is self-contained; the plot is right."""

from __future__ import annotations

import base64
import copy
import json
import math
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from faultmesh.host.report import (
    JournalError,
    failed_at,
    journal_problems,
    load_journal,
    page,
    probe_figure,
    render,
    report_command,
    resolve_run,
)

T0 = 1_795_000_000.0
RUN_ID = "networkchaos-web-partition-20261122-081500-ab12"


def journal(with_probe: bool = True) -> dict[str, Any]:
    """A run: 30 s, a partition from +5 s to +12 s (every probe fails), a stress from +18 s to +25 s (slow)."""
    samples = []
    for second in range(30):
        at = T0 + second + 0.5
        if 5 <= second < 12:
            samples.append({"at": at, "ok": False, "latency_ms": None, "detail": "timed out after 1 s"})
        else:
            samples.append({"at": at, "ok": True, "latency_ms": 40.0 if 18 <= second < 25 else 2.0, "detail": "200"})
    return {
        "version": 1,
        "run": RUN_ID,
        "experiment": {"kind": "NetworkChaos", "namespace": "demo", "name": "web-partition", "uid": "u-1"},
        "started_at": T0,
        "finished_at": T0 + 30,
        "outcome": "Aborted",
        "reason": "steady state lost: <probe> failed",
        "targets": [
            {"record": "demo/web", "selector_key": ".", "container_id": "containerd://web", "injected_at": T0 + 5,
             "injected_verified": True, "recovered_at": T0 + 12, "recovered_verified": True, "error": ""},
            {"record": "demo/db", "selector_key": ".", "container_id": "containerd://db", "injected_at": None,
             "injected_verified": False, "recovered_at": None, "recovered_verified": False,
             "error": "no such container"},
        ],
        "windows": [
            {"start": T0 + 5, "end": T0 + 12, "label": "NetworkChaos demo/web-partition"},
            {"start": T0 + 18, "end": T0 + 25, "label": "StressChaos demo/burn <cpu>"},
        ],
        "probe": {
            "name": "web-health", "kind": "HTTP", "target": "http://169.254.10.2/ (from demo/client)",
            "interval_seconds": 1, "timeout_seconds": 1, "failure_threshold": 3, "success_threshold": 1,
            "samples": samples, "verdict": "Failed",
        } if with_probe else None,
        "events": [
            {"at": T0 + 5, "type": "Normal", "reason": "Applied", "message": "partition in"},
            {"at": T0 + 7.5, "type": "Warning", "reason": "SteadyStateLost", "message": "3 failures in a row"},
        ],
    }


class Page(HTMLParser):
    """Collects what the tests look at: tags with their attributes, headings, table cells (whole), all text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[str] = []
        self.cells: list[str] = []
        self.text: list[str] = []
        self._heading: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2"):
            self._heading = []
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for buffer in (self._heading, self._cell):
            if buffer is not None:
                buffer.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_is_one_self_contained_page_with_the_plot_inlined(tmp_path: Path) -> None:
    html_path, png_path = render(journal(), tmp_path / "run")
    assert (html_path, png_path) == (tmp_path / "run" / "report.html", tmp_path / "run" / "report.png")
    text = html_path.read_text()
    parsed = Page(text)
    assert parsed.headings == ["NetworkChaos demo/web-partition", "Steady state", "Targets", "Fault windows", "Events"]
    # Nothing is fetched: no scripts, stylesheets or images from elsewhere.
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "link", "iframe")
        for name in ("src", "href"):
            assert attrs.get(name) is None or attrs[name].startswith("data:"), (tag, attrs)
    (image,) = [attrs for tag, attrs in parsed.tags if tag == "img"]
    inlined = base64.b64decode(image["src"].removeprefix("data:image/png;base64,"))
    assert inlined == png_path.read_bytes()
    assert png_size(inlined) == (1000, 420) == (int(image["width"]), int(image["height"]))
    joined = " ".join(parsed.text)
    assert RUN_ID in joined and "Aborted" in joined and "steady state lost: <probe> failed" in joined
    assert "<probe>" not in text and "&lt;probe&gt;" in text  # journal text is escaped
    assert "23/30 ok (77%)" in joined and "Steady state lost" in joined and "at +7.5 s" in joined


def test_targets_show_inject_and_recover_times_and_verification(tmp_path: Path) -> None:
    html_path, _ = render(journal(), tmp_path)
    cells = Page(html_path.read_text()).cells
    web = cells[cells.index("demo/web"):][:7]
    assert web == ["demo/web", "containerd://web", "2026-11-18 11:06:45.000 UTC (+5.0 s)", "✓ yes",
                   "2026-11-18 11:06:52.000 UTC (+12.0 s)", "✓ yes", ""]
    db = cells[cells.index("demo/db"):][:7]
    assert db == ["demo/db", "containerd://db", "—", "✗ no", "—", "✗ no", "no such container"]


def test_each_fault_window_is_listed_with_the_probe_inside_it(tmp_path: Path) -> None:
    html_path, _ = render(journal(), tmp_path)
    cells = Page(html_path.read_text()).cells
    for label in ("NetworkChaos demo/web-partition", "StressChaos demo/burn <cpu>"):
        assert label in cells
    effect = cells[cells.index("NetworkChaos demo/web-partition (+5.0 s … +12.0 s)"):][:5]
    assert effect[1:3] == ["7", "0%"]
    stress = cells[cells.index("StressChaos demo/burn <cpu> (+18.0 s … +25.0 s)"):][:5]
    assert stress[1:4] == ["7", "100%", "40.0 ms"]
    before = cells[cells.index("before the first fault"):][:4]
    assert before[1:4] == ["5", "100%", "2.0 ms"]


def test_the_plot_shades_and_labels_each_window_and_marks_failures_at_the_top() -> None:
    figure = probe_figure(journal())
    (axes,) = figure.axes
    windows = [patch for patch in axes.patches if patch.get_gid() == "fault-window"]
    assert len(windows) == 2
    spans = sorted((round(p.get_x(), 3), round(p.get_x() + p.get_width(), 3)) for p in windows)  # type: ignore[attr-defined]
    assert spans == [(5.0, 12.0), (18.0, 25.0)]
    labels = [text.get_text() for text in axes.texts if text.get_gid() == "fault-window-label"]
    assert labels == ["NetworkChaos demo/web-partition", "StressChaos demo/burn <cpu>"]
    (failed,) = [line for line in axes.lines if line.get_gid() == "failed"]
    assert list(failed.get_xdata()) == [second + 0.5 for second in range(5, 12)]
    assert set(failed.get_ydata()) == {0.965}  # in axes coordinates: along the top
    (latency,) = [line for line in axes.lines if line.get_gid() == "latency"]
    assert sum(1 for value in latency.get_ydata() if not math.isnan(value)) == 23  # NaN breaks the line at failures
    (lost,) = [line for line in axes.lines if line.get_gid() == "steady-state-lost"]
    assert list(lost.get_xdata()) == [7.5, 7.5]
    assert axes.get_ylabel() == "probe latency (ms)"


def test_the_moment_the_steady_state_was_lost_is_the_threshold_th_failure_in_a_row() -> None:
    assert failed_at(journal()) == T0 + 7.5
    healthy = journal()
    healthy["probe"]["verdict"] = "Healthy"
    assert failed_at(healthy) is None


def test_a_run_without_a_probe_renders_without_a_plot_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "report.png").write_bytes(b"stale")
    html_path, png_path = render(journal(with_probe=False), tmp_path)
    assert png_path is None and not (tmp_path / "report.png").exists()
    parsed = Page(html_path.read_text())
    assert not [tag for tag, _ in parsed.tags if tag == "img"]
    assert "This run had no steady-state probe, so there is nothing to plot." in parsed.text


def test_a_running_run_with_an_open_window_renders(tmp_path: Path) -> None:
    running = journal()
    running.update(finished_at=None, outcome="Running", reason="")
    running["windows"][1]["end"] = None
    running["probe"]["verdict"] = "Healthy"
    html_path, png_path = render(running, tmp_path)
    cells = Page(html_path.read_text()).cells
    assert "open" in cells and "still running" in cells
    assert png_path is not None and png_size(png_path.read_bytes()) == (1000, 420)


def test_load_journal_names_every_bad_field(tmp_path: Path) -> None:
    bad = journal()
    bad["targets"][0]["injected_at"] = "soon"
    bad["targets"][1]["recovered_verified"] = "yes"
    bad["windows"][0]["end"] = T0  # before its start
    del bad["experiment"]["name"]
    bad["probe"]["samples"][3]["ok"] = None
    bad["probe"]["verdict"] = "Fine"
    bad["events"] = {}
    path = tmp_path / "journal.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(JournalError) as caught:
        load_journal(path)
    assert caught.value.problems == [
        "journal.json: experiment.name: is missing",
        'journal.json: targets[0].injected_at: not a number (the string "soon")',
        'journal.json: targets[1].recovered_verified: not true or false (the string "yes")',
        f"journal.json: windows[0].end: {T0} is before the window's start {T0 + 5}",
        "journal.json: events: not a list (an object)",
        "journal.json: probe.verdict: not Healthy or Failed (the string \"Fine\")",
        "journal.json: probe.samples[3].ok: is null; true or false is required",
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "journal.json: not JSON: line 1 column 2: Expecting property name enclosed in double quotes"),
        ("[]", "journal.json: not an object (a list)"),
        ('{"version": 2}', "journal.json: version: 2 is not supported (this faultmesh reads version 1)"),
    ],
)
def test_load_journal_refuses_what_is_not_a_journal(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "journal.json"
    path.write_text(content)
    with pytest.raises(JournalError) as caught:
        load_journal(path)
    assert caught.value.problems == [problem]


def test_a_missing_journal_is_a_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match=r"journal\.json: no such file"):
        load_journal(tmp_path / "journal.json")


def test_render_refuses_a_bad_journal_without_writing(tmp_path: Path) -> None:
    bad = journal()
    bad["started_at"] = None
    with pytest.raises(JournalError, match=r"journal: started_at: is null; a number is required"):
        render(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_fields_are_allowed_for_newer_writers() -> None:
    newer = journal()
    newer["effects"] = [{"fault": "partition"}]
    newer["targets"][0]["pid"] = 12
    assert journal_problems(newer) == []


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
times = st.floats(min_value=T0, max_value=T0 + 3600, allow_nan=False)


@st.composite
def journals(draw: st.DrawFn) -> dict[str, Any]:
    base = journal(with_probe=draw(st.booleans()))
    base["reason"] = draw(texts)
    base["experiment"]["name"] = draw(texts.filter(bool))
    base["windows"] = [{"start": start, "end": draw(st.none() | st.just(start + 1.0)), "label": draw(texts)}
                       for start in draw(st.lists(times, max_size=4))]
    base["events"] = [{"at": draw(times), "type": draw(st.sampled_from(["Normal", "Warning"])),
                       "reason": draw(texts), "message": draw(texts)} for _ in range(draw(st.integers(0, 3)))]
    if base["probe"] is not None:
        base["probe"]["samples"] = [{"at": at, "ok": ok, "latency_ms": draw(st.none() | st.floats(0, 1e4)),
                                     "detail": draw(texts)}
                                    for at, ok in draw(st.lists(st.tuples(times, st.booleans()), max_size=20))]
        base["probe"]["verdict"] = draw(st.sampled_from(["Healthy", "Failed"]))
    return base


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=journals())
def test_any_valid_journal_makes_a_well_formed_page_with_its_text_escaped(data: dict[str, Any]) -> None:
    assert journal_problems(data) == []
    before = copy.deepcopy(data)
    text = page(data, None)
    assert data == before  # rendering does not touch the journal
    parsed = Page(text)
    assert not [tag for tag, _ in parsed.tags if tag not in {"html", "head", "meta", "title", "style", "body", "h1",
                                                            "h2", "table", "tr", "th", "td", "span", "p", "details",
                                                            "summary"}]
    assert data["experiment"]["name"] in "".join(parsed.text)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(report_command)
    return app


def make_run(state_dir: Path, run_id: str, data: dict[str, Any] | None = None) -> Path:
    run_dir = state_dir / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "journal.json").write_text(json.dumps(data if data is not None else journal()))
    return run_dir


def test_report_command_re_renders_a_run_by_id_prefix_or_path(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, RUN_ID)
    make_run(tmp_path, "podchaos-kill-20261122-090000-0001", journal(with_probe=False))
    for given_run in (RUN_ID, "networkchaos-web", str(run_dir), str(run_dir / "journal.json")):
        result = CliRunner().invoke(cli(), [given_run, "--state-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [str(run_dir / "report.html"), str(run_dir / "report.png")]
    assert png_size((run_dir / "report.png").read_bytes()) == (1000, 420)


def test_report_command_lists_the_newest_runs_when_the_run_is_unknown(tmp_path: Path) -> None:
    for stamp in range(7):
        make_run(tmp_path, f"podchaos-kill-20261122-09000{stamp}-000{stamp}")
    result = CliRunner().invoke(cli(), ["nope", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    newest = ", ".join(f"podchaos-kill-20261122-09000{stamp}-000{stamp}" for stamp in (6, 5, 4, 3, 2))
    assert result.stderr.strip() == f"✗ no run 'nope' under {tmp_path / 'runs'}; the newest: {newest}"
    assert "Traceback" not in result.output


def test_report_command_with_an_ambiguous_prefix_or_no_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["x", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"✗ no run 'x': there are no runs under {tmp_path / 'runs'}"
    make_run(tmp_path, "podchaos-a-20261122-090000-0001")
    make_run(tmp_path, "podchaos-b-20261122-090001-0002")
    with pytest.raises(LookupError, match=r"'podchaos' matches 2 runs \(podchaos-b-20261122-090001-0002, "):
        resolve_run("podchaos", tmp_path)


def test_report_command_on_a_broken_journal_names_the_field(tmp_path: Path) -> None:
    bad = journal()
    bad["targets"][0]["injected_at"] = "soon"
    make_run(tmp_path, RUN_ID, bad)
    result = CliRunner().invoke(cli(), [RUN_ID, "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == '✗ journal.json: targets[0].injected_at: not a number (the string "soon")'
