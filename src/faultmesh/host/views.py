"""What ``faultmesh get`` and ``faultmesh describe`` show of host mode's store, kubectl-style.

The renderers are pure (rows and a clock in, rich renderables or wire-form dicts out); the two commands at the
bottom only open the store and print. ``-o json|yaml`` emit each object as ``kubectl get -o yaml`` would: the
manifest with its metadata filled in and its status in Chaos Mesh's wire form; host-mode bookkeeping (run id,
owner, outcome) rides along as ``host.faultmesh.io/*`` annotations, so the object still loads as a manifest.

Without ``-n``, both commands look in every namespace: host mode has no current context whose namespace would
be the natural default, and a newcomer's first ``faultmesh get`` should show what ran.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from faultmesh.api.base import not_one_of
from faultmesh.api.common import PAUSE_ANNOTATION, ChaosResource
from faultmesh.api.registry import kinds

from .store import (
    DB_NAME,
    STATE_DIR_ENV,
    AmbiguousError,
    EventRow,
    ExperimentRow,
    NotFoundError,
    ScheduleRow,
    Store,
    StoreError,
    default_state_dir,
)

EXIT_FAILED = 1
EXIT_INVALID = 2
SCHEDULE_KIND = "Schedule"
HOST_ANNOTATION_PREFIX = "host.faultmesh.io/"
INJECTED = "Injected"
NOT_INJECTED = "Not Injected"

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar=STATE_DIR_ENV,
        help="Host mode's state (store, journal, runs); default $FAULTMESH_STATE_DIR or /var/lib/faultmesh.",
        show_default=False,
    ),
]


class ViewError(Exception):
    """The user asked for something that cannot be shown (an unknown kind, clashing options)."""


# ---- kinds --------------------------------------------------------------------------------------------


def host_kinds() -> dict[str, str]:
    """Every spelling ``get``/``describe`` accept for a kind (name, lowercase name, plural, short names) → kind."""
    spellings: dict[str, str] = {}
    for name, cls in kinds().items():
        if not (issubclass(cls, ChaosResource) or name == SCHEDULE_KIND):
            continue
        for spelling in (name, name.lower(), cls.crd.plural, *cls.crd.short_names):
            spellings[spelling.lower()] = name
    return spellings


def resolve_kind(text: str) -> str:
    """``networkchaos`` / ``NetworkChaos`` / ``schedules`` → the kind's name; :class:`ViewError` if unknown."""
    spellings = host_kinds()
    found = spellings.get(text.lower())
    if found is None:
        names = sorted(set(spellings.values()))
        raise ViewError(not_one_of(text, "an experiment kind", names))
    return found


# ---- phases, counts, times ----------------------------------------------------------------------------


def records(status: dict[str, Any]) -> list[dict[str, Any]]:
    experiment = status.get("experiment") or {}
    return list(experiment.get("containerRecords") or [])


def condition_true(status: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or [])


def target_counts(row: ExperimentRow) -> tuple[int, int]:
    """(targets injected now, targets selected)."""
    found = records(row.status)
    return sum(1 for record in found if record.get("phase") == INJECTED), len(found)


def experiment_phase(row: ExperimentRow) -> str:
    """One word for where an experiment stands, from its records and desired state.

    Chaos Mesh's dashboard words (Injecting, Running, Paused, Finished, Deleting), plus Recovering while a
    pause, stop or ``faultmesh recover`` is taking faults out, and Pending while no process drives it yet.
    """
    if row.finished_at is not None:
        return "Finished"
    if row.delete_requested_at is not None:
        # A recover request is written as a delete request with a reason (Store.request_recover).
        return "Recovering" if row.reason else "Deleting"
    injected, total = target_counts(row)
    paused = row.paused or condition_true(row.status, "Paused")
    desired = (row.status.get("experiment") or {}).get("desiredPhase")
    if paused:
        return "Recovering" if injected else "Paused"
    if desired == "Stop":
        # Chaos Mesh counts a stopped experiment whose records are all out as finished.
        return "Recovering" if injected else "Finished"
    if total and injected == total:
        return "Running"
    if not row.owner and not total:
        return "Pending"
    return "Injecting"


PHASE_STYLES = {
    "Running": "green",
    "Injecting": "cyan",
    "Paused": "yellow",
    "Recovering": "yellow",
    "Deleting": "yellow",
    "Pending": "dim",
    "Finished": "",
}
OUTCOME_STYLES = {
    "Completed": "green",
    "Recovered": "green",
    "Aborted": "yellow",
    "Failed": "red",
    "Interrupted": "red",
}


def human_age(seconds: float) -> str:
    """kubectl's short age: 45s, 3m20s, 17m, 5h3m, 30h, 3d4h, 120d, 2y."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def rfc3339(epoch: float) -> str:
    """Kubernetes' timestamp form, whole seconds in UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, or None if it is not one."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


# ---- wire form (-o json|yaml) -------------------------------------------------------------------------


def _with_metadata(manifest: dict[str, Any], uid: str, namespace: str, name: str, created_at: float) -> dict[str, Any]:
    obj = copy.deepcopy(manifest)
    meta = dict(obj.get("metadata") or {})
    meta.update(name=name, namespace=namespace, uid=uid, creationTimestamp=rfc3339(created_at))
    obj["metadata"] = meta
    return obj


def _set_annotations(obj: dict[str, Any], values: dict[str, str | None]) -> None:
    annotations = dict(obj["metadata"].get("annotations") or {})
    for key, value in values.items():
        if value:
            annotations[key] = value
        else:
            annotations.pop(key, None)
    if annotations:
        obj["metadata"]["annotations"] = annotations
    else:
        obj["metadata"].pop("annotations", None)


def _ordered(obj: dict[str, Any]) -> dict[str, Any]:
    head = ("apiVersion", "kind", "metadata", "spec")
    ordered = {key: obj[key] for key in head if key in obj}
    ordered.update({key: value for key, value in obj.items() if key not in head and key != "status"})
    if "status" in obj:
        ordered["status"] = obj["status"]
    return ordered


def experiment_object(row: ExperimentRow) -> dict[str, Any]:
    """The experiment as ``kubectl get -o yaml`` would show it: the manifest, filled-in metadata, status."""
    obj = _with_metadata(row.manifest, row.uid, row.namespace, row.name, row.created_at)
    obj.setdefault("kind", row.kind)
    if row.delete_requested_at is not None:
        obj["metadata"]["deletionTimestamp"] = rfc3339(row.delete_requested_at)
    _set_annotations(
        obj,
        {
            PAUSE_ANNOTATION: "true" if row.paused else None,
            HOST_ANNOTATION_PREFIX + "run": row.run_id,
            HOST_ANNOTATION_PREFIX + "owner": row.owner,
            HOST_ANNOTATION_PREFIX + "phase": experiment_phase(row),
            HOST_ANNOTATION_PREFIX + "outcome": row.outcome,
            HOST_ANNOTATION_PREFIX + "reason": row.reason,
            HOST_ANNOTATION_PREFIX + "finished-at": rfc3339(row.finished_at) if row.finished_at is not None else None,
        },
    )
    if row.status:
        obj["status"] = copy.deepcopy(row.status)
    return _ordered(obj)


def schedule_object(row: ScheduleRow) -> dict[str, Any]:
    obj = _with_metadata(row.manifest, row.uid, row.namespace, row.name, row.created_at)
    obj.setdefault("kind", SCHEDULE_KIND)
    _set_annotations(
        obj,
        {PAUSE_ANNOTATION: "true" if row.paused else None, HOST_ANNOTATION_PREFIX + "owner": row.owner},
    )
    if row.status:
        obj["status"] = copy.deepcopy(row.status)
    return _ordered(obj)


def list_object(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several objects wrapped the way kubectl wraps them."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


# ---- tables (get) -------------------------------------------------------------------------------------


def _table(*headers: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def experiments_table(rows: Sequence[ExperimentRow], now: float) -> Table:
    """One line per experiment: NAMESPACE KIND NAME PHASE TARGETS AGE OUTCOME."""
    table = _table("NAMESPACE", "KIND", "NAME", "PHASE", "TARGETS", "AGE", "OUTCOME")
    for row in rows:
        injected, total = target_counts(row)
        phase = experiment_phase(row)
        outcome = Text(row.outcome or "-", style=OUTCOME_STYLES.get(row.outcome, "dim"))
        table.add_row(
            Text(row.namespace),
            Text(row.kind),
            Text(row.name),
            Text(phase, style=PHASE_STYLES.get(phase, "")),
            f"{injected}/{total}",
            human_age(now - row.created_at),
            outcome,
        )
    return table


def schedules_table(rows: Sequence[ScheduleRow], now: float) -> Table:
    """One line per Schedule: NAMESPACE NAME SCHEDULE TYPE ACTIVE LAST SCHEDULE PAUSED AGE."""
    table = _table("NAMESPACE", "NAME", "SCHEDULE", "TYPE", "ACTIVE", "LAST SCHEDULE", "PAUSED", "AGE")
    for row in rows:
        spec = row.manifest.get("spec") or {}
        last = parse_timestamp(str(row.status.get("time") or ""))
        table.add_row(
            Text(row.namespace),
            Text(row.name),
            Text(str(spec.get("schedule", ""))),
            Text(str(spec.get("type", ""))),
            str(len(row.status.get("active") or [])),
            human_age(now - last) if last is not None else "<none>",
            "true" if row.paused else "false",
            human_age(now - row.created_at),
        )
    return table


# ---- describe -----------------------------------------------------------------------------------------


@dataclass
class _Field:
    indent: int
    label: str
    value: Text


class _Describer:
    """Collects kubectl-describe lines; consecutive ``Label:  value`` lines at one indent share a column."""

    INDENT = "  "

    def __init__(self) -> None:
        self._lines: list[_Field | Text] = []

    def field(self, indent: int, label: str, value: str | Text) -> None:
        self._lines.append(_Field(indent, label, value if isinstance(value, Text) else Text(value)))

    def heading(self, indent: int, label: str) -> None:
        self._lines.append(Text(f"{self.INDENT * indent}{label}:"))

    def line(self, indent: int, text: str | Text) -> None:
        body = text if isinstance(text, Text) else Text(text)
        self._lines.append(Text(self.INDENT * indent) + body)

    def table(
        self, indent: int, headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str] = ()
    ) -> None:
        """A plain text table with dashed headers, as kubectl prints Events."""
        widths = [len(header) for header in headers]
        for row in rows:
            widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

        def joined(cells: Sequence[str]) -> str:
            padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths[:-1], strict=True)]
            return "  ".join([*padded, cells[-1]]).rstrip()

        self.line(indent, joined(headers))
        self.line(indent, joined(["-" * len(header) for header in headers]))
        for index, row in enumerate(rows):
            style = styles[index] if index < len(styles) else ""
            self.line(indent, Text(joined(row), style=style))

    def render(self) -> Text:
        out = Text()
        index = 0
        while index < len(self._lines):
            item = self._lines[index]
            if isinstance(item, Text):
                out.append_text(item)
                out.append("\n")
                index += 1
                continue
            run: list[_Field] = []
            while index < len(self._lines):
                candidate = self._lines[index]
                if not isinstance(candidate, _Field) or candidate.indent != item.indent:
                    break
                run.append(candidate)
                index += 1
            width = max(len(entry.label) for entry in run) + 1
            for entry in run:
                # An empty label continues the previous field's value on a line of its own.
                label = f"{entry.label}:" if entry.label else ""
                out.append(f"{self.INDENT * entry.indent}{label.ljust(width)}  ")
                out.append_text(entry.value)
                out.append("\n")
        out.rstrip()
        return out


def field_label(key: str) -> str:
    """``labelSelectors`` → ``Label Selectors``, as kubectl describe titles the fields of a custom resource."""
    if not key[:1].isalpha() or not key.replace("_", "").isalnum():
        return key
    words: list[str] = []
    for char in key:
        if char.isupper() and words and not words[-1][-1:].isupper():
            words.append(char)
        elif not words:
            words.append(char.upper())
        else:
            words[-1] += char
    return " ".join(words)


def _scalar(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe_value(out: _Describer, indent: int, key: str, value: Any) -> None:
    label = field_label(key)
    if isinstance(value, dict):
        if not value:
            out.field(indent, label, "<none>")
        elif all(isinstance(item, str) for item in value.values()):
            # User data (labels, annotations, label selectors): keys as written, one k=v a line like kubectl.
            pairs = [f"{name}={item}" for name, item in sorted(value.items())]
            out.field(indent, label, pairs[0])
            for pair in pairs[1:]:
                out.field(indent, "", pair)
        else:
            out.heading(indent, label)
            for name, item in value.items():
                _describe_value(out, indent + 1, name, item)
    elif isinstance(value, list):
        if not value:
            out.field(indent, label, "<none>")
        elif all(not isinstance(item, dict | list) for item in value):
            out.field(indent, label, ", ".join(_scalar(item) for item in value))
        else:
            out.heading(indent, label)
            for item in value:
                if isinstance(item, dict):
                    for name, inner in item.items():
                        _describe_value(out, indent + 1, name, inner)
                else:
                    out.line(indent + 1, _scalar(item))
    else:
        out.field(indent, label, _scalar(value))


def _age_of(at: float | None, now: float) -> str:
    return human_age(now - at) if at is not None else "<unknown>"


def _describe_status(out: _Describer, status: dict[str, Any], now: float) -> None:
    experiment = status.get("experiment") or {}
    out.heading(0, "Status")
    out.field(1, "Desired Phase", str(experiment.get("desiredPhase") or "<none>"))
    conditions = status.get("conditions") or []
    if conditions:
        out.heading(1, "Conditions")
        out.table(
            2,
            ("Type", "Status", "Reason"),
            [(str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason") or "")) for c in conditions],
        )
    else:
        out.field(1, "Conditions", "<none>")
    found = records(status)
    if not found:
        out.field(1, "Container Records", "<none>")
        return
    out.heading(1, "Container Records")
    for record in found:
        # One heading per record, named by its id, as kubectl describe names a pod's containers.
        phase = str(record.get("phase", ""))
        out.heading(2, str(record.get("id", "")))
        out.field(3, "Selector Key", str(record.get("selectorKey", "")))
        out.field(3, "Phase", Text(phase, style="green" if phase == INJECTED else ""))
        out.field(3, "Injected Count", str(record.get("injectedCount", 0)))
        out.field(3, "Recovered Count", str(record.get("recoveredCount", 0)))
        events = record.get("events") or []
        if not events:
            out.field(3, "Events", "<none>")
            continue
        out.heading(3, "Events")
        rows = []
        styles = []
        for item in events:
            stamp = str(item.get("timestamp", ""))
            at = parse_timestamp(stamp)
            rows.append(
                (
                    str(item.get("type", "")),
                    str(item.get("operation", "")),
                    human_age(now - at) if at is not None else stamp,
                    str(item.get("message") or ""),
                )
            )
            styles.append("red" if item.get("type") == "Failed" else "")
        out.table(4, ("Type", "Operation", "Age", "Message"), rows, styles)


def _describe_events(out: _Describer, events: Sequence[EventRow], now: float) -> None:
    if not events:
        out.field(0, "Events", "<none>")
        return
    out.heading(0, "Events")
    out.table(
        1,
        ("Type", "Reason", "Age", "Message"),
        [(event.type, event.reason, human_age(now - event.at), event.message) for event in events],
        ["yellow" if event.type == "Warning" else "" for event in events],
    )


def _describe_metadata(out: _Describer, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    out.field(0, "Name", str(meta.get("name", "")))
    out.field(0, "Namespace", str(meta.get("namespace", "")))
    for label, key in (("Labels", "labels"), ("Annotations", "annotations")):
        values = meta.get(key) or {}
        pairs = [f"{name}={value}" for name, value in sorted(values.items())] or ["<none>"]
        out.field(0, label, pairs[0])
        for pair in pairs[1:]:
            out.field(0, "", pair)
    out.field(0, "API Version", str(obj.get("apiVersion", "")))
    out.field(0, "Kind", str(obj.get("kind", "")))
    out.field(0, "UID", str(meta.get("uid", "")))


def describe_experiment(row: ExperimentRow, events: Sequence[EventRow], now: float) -> Text:
    """kubectl-describe text of one experiment: metadata, host-mode state, spec, status, events."""
    out = _Describer()
    manifest = copy.deepcopy(row.manifest)
    manifest.setdefault("metadata", {}).update(name=row.name, namespace=row.namespace, uid=row.uid)
    manifest.setdefault("kind", row.kind)
    _describe_metadata(out, manifest)
    out.field(0, "Created", f"{rfc3339(row.created_at)} ({human_age(now - row.created_at)} ago)")
    phase = experiment_phase(row)
    out.field(0, "Phase", Text(phase, style=PHASE_STYLES.get(phase, "")))
    injected, total = target_counts(row)
    out.field(0, "Targets", f"{injected}/{total} injected")
    out.field(0, "Paused", "true (desired)" if row.paused else "false")
    out.field(0, "Run", f"{row.run_id} (runs/{row.run_id})" if row.run_id else "<none>")
    out.field(0, "Driven By", row.owner or "<nobody>")
    if row.delete_requested_at is not None:
        requested = row.delete_requested_at
        out.field(0, "Delete Requested", f"{rfc3339(requested)} ({_age_of(requested, now)} ago)")
    if row.finished_at is not None:
        outcome = Text(row.outcome or "<unknown>", style=OUTCOME_STYLES.get(row.outcome, ""))
        if row.reason:
            outcome.append(f": {row.reason}")
        out.field(0, "Outcome", outcome)
        out.field(0, "Finished", f"{rfc3339(row.finished_at)} ({_age_of(row.finished_at, now)} ago)")
    spec = manifest.get("spec")
    if isinstance(spec, dict) and spec:
        out.heading(0, "Spec")
        for key, value in spec.items():
            _describe_value(out, 1, key, value)
    _describe_status(out, row.status, now)
    _describe_events(out, events, now)
    return out.render()


def describe_schedule(row: ScheduleRow, experiments: Sequence[ExperimentRow], now: float) -> Text:
    """kubectl-describe text of one Schedule, with the experiments it made (newest first)."""
    out = _Describer()
    manifest = copy.deepcopy(row.manifest)
    manifest.setdefault("metadata", {}).update(name=row.name, namespace=row.namespace, uid=row.uid)
    manifest.setdefault("kind", SCHEDULE_KIND)
    _describe_metadata(out, manifest)
    out.field(0, "Created", f"{rfc3339(row.created_at)} ({human_age(now - row.created_at)} ago)")
    out.field(0, "Paused", "true (desired)" if row.paused else "false")
    out.field(0, "Driven By", row.owner or "<nobody>")
    spec = manifest.get("spec")
    if isinstance(spec, dict) and spec:
        out.heading(0, "Spec")
        for key, value in spec.items():
            _describe_value(out, 1, key, value)
    out.heading(0, "Status")
    last = parse_timestamp(str(row.status.get("time") or ""))
    out.field(1, "Last Schedule Time", f"{row.status['time']} ({_age_of(last, now)} ago)" if last else "<none>")
    active = row.status.get("active") or []
    out.field(1, "Active", ", ".join(f"{ref.get('kind', '')}/{ref.get('name', '')}" for ref in active) or "<none>")
    if experiments:
        out.heading(0, "Made")
        out.table(
            1,
            ("Kind", "Name", "Phase", "Age", "Outcome"),
            [
                (item.kind, item.name, experiment_phase(item), human_age(now - item.created_at), item.outcome or "-")
                for item in experiments
            ],
        )
    return out.render()


def made_by(schedule: ScheduleRow, candidates: Iterable[ExperimentRow]) -> list[ExperimentRow]:
    """The experiments whose ownerReferences name the Schedule (by uid), as Chaos Mesh's schedule controller sets."""
    made = []
    for row in candidates:
        owners = (row.manifest.get("metadata") or {}).get("ownerReferences") or []
        if any(ref.get("uid") == schedule.uid for ref in owners if isinstance(ref, dict)):
            made.append(row)
    return made


# ---- the commands ---------------------------------------------------------------------------------------


class GetFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def _consoles() -> tuple[Console, Console]:
    return Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)


def _fail(err: Console, message: str, code: int) -> typer.Exit:
    err.print(f"[red]✗[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _open_existing(state_dir: Path | None) -> Store | None:
    """The store if one exists (a read command never creates one), else None."""
    directory = state_dir if state_dir is not None else default_state_dir()
    try:
        exists = (directory / DB_NAME).exists()
    except OSError as error:
        raise StoreError(
            f"cannot read state dir {directory}: {error.strerror or error} (run as root, or give --state-dir)"
        ) from None
    return Store.open(directory) if exists else None


def _emit(document: dict[str, Any], output: GetFormat) -> None:
    if output is GetFormat.JSON:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def _run(action: Callable[[Console, Console], None]) -> None:
    """Run a command body, turning the store's and the user's errors into a message and an exit code."""
    out, err = _consoles()
    try:
        action(out, err)
    except (ViewError, NotFoundError, AmbiguousError) as error:
        raise _fail(err, str(error), EXIT_INVALID) from None
    except StoreError as error:
        raise _fail(err, str(error), EXIT_FAILED) from None


def get_command(
    kind: Annotated[
        str | None,
        typer.Argument(help="Kind to list (networkchaos, NetworkChaos, schedule, ...); all experiments when omitted."),
    ] = None,
    name: Annotated[str | None, typer.Argument(help="Show only this one.")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: every namespace).")
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace (the default; kept for kubectl users).")
    ] = False,
    output: Annotated[GetFormat, typer.Option("--output", "-o", help="table, json or yaml.")] = GetFormat.TABLE,
    state_dir: StateDirOption = None,
) -> None:
    """List host-mode experiments (and Schedules) with their phase, targets and outcome, like kubectl get."""

    def body(out: Console, err: Console) -> None:
        if namespace is not None and all_namespaces:
            raise ViewError("give either -n NAMESPACE or -A, not both")
        wanted = resolve_kind(kind) if kind is not None else None
        store = _open_existing(state_dir)
        experiments: list[ExperimentRow] = []
        schedules: list[ScheduleRow] = []
        if store is not None:
            with store:
                if wanted != SCHEDULE_KIND:
                    experiments = store.list(kind=wanted, namespace=namespace)
                if wanted in (None, SCHEDULE_KIND):
                    schedules = store.list_schedules(namespace=namespace)
        if name is not None:
            experiments = [row for row in experiments if row.name == name]
            schedules = [row for row in schedules if row.name == name]
            if not experiments and not schedules:
                what = wanted.lower() if wanted else "experiment"
                where = f"{namespace}/{name}" if namespace else name
                raise NotFoundError(f"{what} {where} not found")
        if output is not GetFormat.TABLE:
            objects = [experiment_object(row) for row in experiments] + [schedule_object(row) for row in schedules]
            _emit(objects[0] if name is not None and len(objects) == 1 else list_object(objects), output)
            return
        now = time.time()
        shown: list[RenderableType] = []
        if experiments:
            shown.append(experiments_table(experiments, now))
        if schedules:
            if shown:
                shown.append(Text(""))
            shown.append(schedules_table(schedules, now))
        if shown:
            group = Group(*shown)
            # Never cut a name short to fit the terminal (or the 80 columns of a pipe): kubectl does not either.
            natural = out.measure(group, options=out.options.update_width(1_000_000)).maximum
            out.width = max(out.width, natural)
            out.print(group)
            return
        what = wanted.lower() if wanted else "experiments"
        where = f" in namespace {namespace}" if namespace else ""
        err.print(f"No {what} found{where}.", highlight=False)

    _run(body)


def _find(store: Store, name: str, namespace: str | None, kind: str | None) -> ExperimentRow | ScheduleRow:
    """The one experiment or Schedule called ``name``; a bare name may match either."""
    if kind == SCHEDULE_KIND:
        if namespace is not None:
            return store.get_schedule(namespace, name)
        schedules = [row for row in store.list_schedules() if row.name == name]
        if len(schedules) == 1:
            return schedules[0]
        if schedules:
            candidates = sorted(row.key for row in schedules)
            raise AmbiguousError(
                f"schedule {name} is ambiguous: {', '.join(candidates)}; narrow it with -n NAMESPACE", candidates
            )
        raise NotFoundError(f"schedule {name} not found")
    try:
        found = store.find(name, namespace, kind)
    except NotFoundError:
        if kind is not None:
            raise
        schedules = [row for row in store.list_schedules(namespace=namespace) if row.name == name]
        if len(schedules) == 1:
            return schedules[0]
        if schedules:
            return _find(store, name, namespace, SCHEDULE_KIND)
        raise
    if kind is None:
        clash = [row for row in store.list_schedules(namespace=namespace) if row.name == name]
        if clash:
            candidates = sorted([found.key, *(row.key for row in clash)])
            raise AmbiguousError(
                f"{name} is ambiguous: {', '.join(candidates)}; narrow it with --kind KIND", candidates
            )
    return found


def describe_command(
    name: Annotated[str, typer.Argument(help="The experiment's (or Schedule's) name.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Its namespace (default: look in every namespace).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="Its kind, when the name is used by several kinds.")
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Show one host-mode experiment in detail: spec, records, conditions and events, like kubectl describe."""

    def body(out: Console, err: Console) -> None:
        wanted = resolve_kind(kind) if kind is not None else None
        store = _open_existing(state_dir)
        if store is None:
            directory = state_dir if state_dir is not None else default_state_dir()
            raise NotFoundError(f"{name} not found; nothing is recorded in {directory} yet")
        with store:
            found = _find(store, name, namespace, wanted)
            now = time.time()
            if isinstance(found, ScheduleRow):
                rendered = describe_schedule(found, made_by(found, store.list(namespace=found.namespace)), now)
            else:
                rendered = describe_experiment(found, store.events(found.uid), now)
        out.print(rendered, highlight=False)

    _run(body)
