"""What the bench reports share: the machine they ran on, the result table and the closing lines.

Each bench renders its own rows and notes; this module keeps the parts whose layout must not drift apart
between them (a Markdown table or aligned columns, then a list of conditions, failures and problems).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path


def machine() -> dict[str, str]:
    """CPU, memory, system and Python of this machine, as a report lists them."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    )
    os_release = {
        key: value.strip('"')
        for key, _, value in (line.partition("=") for line in Path("/etc/os-release").read_text().splitlines())
    }
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "memory": f"{memory_kib / 1024 / 1024:.0f} GiB",
        "system": f"{os_release.get('PRETTY_NAME', 'Linux')}, Linux {platform.release()}",
        "python": platform.python_version(),
    }


def table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, align: str) -> list[str]:
    """The rows under the header: a Markdown table, or columns padded to their widest cell.

    `align` has one letter per column, ``l`` or ``r``: how Markdown aligns it (numbers go right).
    """
    if len(align) != len(header):
        raise ValueError(f"align {align!r} names {len(align)} columns, the header has {len(header)}")
    if markdown:
        rule = "|" + "".join("---:|" if side == "r" else "---|" for side in align)
        return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(row) + " |" for row in rows)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def conditions(bullet: str, load: dict[str, str], machine: dict[str, str], quiet: bool = True) -> list[str]:
    """The load the runs met (and whether it ever fell below the limit) and the machine's facts."""
    lines = [f"{bullet}load {when}: {text}" for when, text in load.items()]
    if not quiet:
        lines.append(f"{bullet}the machine was not quiet: the 1-minute load average never fell below the limit")
    return lines + [f"{bullet}{key}: {value}" for key, value in machine.items()]


def outcome(bullet: str, failures: Sequence[str], problems: Sequence[str]) -> list[str]:
    """One line per failed run (``what: error``) and per problem the bench itself met."""
    return [f"{bullet}FAILED {failure}" for failure in failures] + [f"{bullet}PROBLEM: {p}" for p in problems]
