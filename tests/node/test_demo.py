"""``make demo`` end to end: it must pass on this machine, show each fault's effect, and leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from testbed.containerd.netns import list_netns

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_shows_every_fault_recovered_and_cleans_up(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "faultmesh.demo"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )
    stdout, stderr = demo.communicate()
    result = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("01-partition.yaml", "02-bandwidth.yaml", "03-stress.yaml", "04-container-kill.yaml"):
        assert name in result.stdout
    assert "every fault injected and recovered, verified" in result.stdout
    assert 'spec.delay.latency: "10x"' in result.stdout  # the broken manifest is refused, field named
    journal = json.loads((tmp_path / "demo-report" / "journal.json").read_text())
    assert [w["label"] for w in journal["windows"]][:3] == ["01-partition.yaml", "02-bandwidth.yaml", "03-stress.yaml"]
    samples = journal["probe"]["samples"]
    partition = journal["windows"][0]
    during = [s for s in samples if partition["start"] + 0.5 <= s["at"] <= partition["end"] - 1.5]
    assert during and not any(s["ok"] for s in during), "the partition must fail every probe inside its window"
    assert (tmp_path / "demo-report" / "report.html").stat().st_size > 0
    assert (tmp_path / "demo-report" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The demo's network lab names its namespaces after the demo's PID.
    assert not [name for name in list_netns() if name.startswith(f"fmtb-{demo.pid}-")]
    # The demo's watchdogs and workers name its state directory; none may outlive it.
    leftovers = subprocess.run(["pgrep", "-a", "-f", "faultmesh-demo-"], capture_output=True, text=True,
                               check=False).stdout
    assert leftovers == ""
