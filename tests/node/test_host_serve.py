"""``faultmesh serve`` on a real host: the REST API runs experiments and Schedules, and leaves nothing behind.

Each test starts ``faultmesh serve`` as a child process on a free loopback port, with a token and a private
``--state-dir``, against a lab of its own (two network namespaces with a web server between them and a plain
process for stress; see ``host_fixtures.py``), and drives it with httpx. Effects are checked for real (stress-ng
workers in place or gone, traffic blocked or flowing), and every test ends with the lab exactly as before and
the serve's watchdog gone.
"""

from __future__ import annotations

import re
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from host_fixtures import EVENTUALLY, FAULTMESH, HostLab, Runner, host_lab_fixture  # noqa: F401  (host_lab)

from faultmesh.host.store import Store

LEASE = 3.0
#: The promise for a SIGKILLed serve, as for `faultmesh run`: its faults are gone within the lease plus 2 s.
RECOVERED_WITHIN = LEASE + 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Serve:
    """A ``faultmesh serve`` of the lab, and an httpx client holding its token."""

    def __init__(self, lab: HostLab, tmp: Path) -> None:
        self.lab = lab
        self.token = secrets.token_hex(32)
        token_file = tmp / "serve.token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.runner = Runner([FAULTMESH, "serve", "--listen", self.url.removeprefix("http://"), "--token-file",
                              str(token_file), "--state-dir", str(lab.state_dir), "--inventory", str(lab.inventory),
                              "--lease", str(LEASE), "--log-level", "info"])
        lab.runners.append(self.runner)
        self.runner.wait_for(r"listening on http://")
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        self.anonymous = httpx.Client(base_url=self.url, timeout=60)
        eventually(lambda: self.anonymous.get("/healthz").status_code == 200, "serve answers /healthz")

    def post_yaml(self, path: str, text: str) -> httpx.Response:
        return self.api.post(path, content=text, headers={"content-type": "application/yaml"})

    def experiment(self, name: str) -> dict[str, Any]:
        answer = self.api.get(f"/api/v1/experiments/{self.lab.namespace}/{name}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.runner.kill(sig)
        code = self.runner.wait(EVENTUALLY)
        self.api.close()
        self.anonymous.close()
        return code


def eventually(check: Callable[[], Any], what: str, timeout: float = EVENTUALLY) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def serve(host_lab: HostLab, tmp_path: Path) -> Iterator[Callable[[], Serve]]:
    started: list[Serve] = []

    def start() -> Serve:
        made = Serve(host_lab, tmp_path)
        started.append(made)
        return made

    yield start
    for made in started:
        if made.runner.process.poll() is None:
            made.stop()


def stress_text(lab: HostLab, name: str, duration: str | None = None, load: int = 100) -> str:
    return lab.stress(name, duration).read_text().replace("load: 100", f"load: {load}")


# ---- the API -------------------------------------------------------------------------------------------------


def test_the_token_is_required_and_bad_input_is_refused_by_field(host_lab: HostLab, serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()
    manifest = stress_text(lab, "burn")

    refused = server.anonymous.post("/api/v1/experiments", content=manifest,
                                    headers={"content-type": "application/yaml"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "authentication required"
    wrong = server.anonymous.get("/api/v1/experiments", headers={"Authorization": "Bearer " + "0" * 64})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid token")
    health = server.anonymous.get("/healthz").json()
    assert health["status"] == "ok" and health["owner"].startswith("serve:")
    assert "/api/v1/experiments" in server.anonymous.get("/openapi.json").json()["paths"]

    invalid = server.post_yaml("/api/v1/experiments", manifest.replace("mode: all", "mode: most"))
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid manifest"
    assert any(re.search(r"spec\.mode: .*most", problem) for problem in invalid.json()["problems"]), invalid.json()

    unmatched = server.post_yaml("/api/v1/experiments", manifest.replace("app: worker", "app: nobody"))
    assert unmatched.status_code == 422
    assert "no target matched" in unmatched.json()["problems"][0]
    assert server.api.get("/api/v1/experiments").json()["items"] == []
    assert lab.snapshot() == baseline  # nothing was injected

    assert server.stop() == 0, server.runner.output
    lab.assert_all_gone(baseline)


def test_a_stress_experiment_runs_pauses_resumes_and_is_deleted(host_lab: HostLab,
                                                                serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()

    created = server.post_yaml("/api/v1/experiments", stress_text(lab, "burn"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["kind"], body["namespace"], body["name"]) == ("StressChaos", lab.namespace, "burn")
    assert body["owner"].startswith("serve:") and body["run_id"].startswith("stresschaos-burn-")
    assert body["targets"] == [f"{lab.namespace}/worker/worker"]  # StressChaos records containers
    eventually(lambda: server.experiment("burn")["phase"] == "Running", "the stress is injected")
    assert eventually(lab.spawned, "stress-ng workers run")
    listed = server.api.get("/api/v1/experiments", params={"namespace": lab.namespace}).json()["items"]
    assert [item["name"] for item in listed] == ["burn"]
    detail = server.experiment("burn")
    assert detail["status"]["experiment"]["containerRecords"][0]["phase"] == "Injected"
    assert {"Started", "Applied"} <= {event["reason"] for event in detail["events"]}

    paused = server.api.post(f"/api/v1/experiments/{lab.namespace}/burn/pause")
    assert paused.status_code == 200 and paused.json()["paused"]
    eventually(lambda: not lab.spawned(), "pause removes the stress-ng workers")
    eventually(lambda: server.experiment("burn")["phase"] == "Paused", "the experiment shows Paused")
    assert server.experiment("burn")["active"]
    resumed = server.api.post(f"/api/v1/experiments/{lab.namespace}/burn/resume")
    assert resumed.status_code == 200 and not resumed.json()["paused"]
    eventually(lab.spawned, "resume starts stress-ng again")

    # The CLI steers what serve drives, through the same store.
    cli = lab.cli("pause", "burn", "-n", lab.namespace)
    assert cli.returncode == 0, cli.stderr
    eventually(lambda: not lab.spawned(), "`faultmesh pause` removes the workers of a served experiment")
    assert lab.cli("resume", "burn", "-n", lab.namespace).returncode == 0
    eventually(lab.spawned, "`faultmesh resume` brings them back")

    run_id = body["run_id"]
    deleted = server.api.delete(f"/api/v1/experiments/{lab.namespace}/burn", params={"wait": "true"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["state"] == "deleted"
    assert lab.snapshot() == baseline  # no stress-ng left, the worker's cgroups as before
    assert server.api.get(f"/api/v1/experiments/{lab.namespace}/burn").status_code == 404

    journal = server.api.get(f"/api/v1/runs/{run_id}/journal").json()
    assert journal["outcome"] == "Deleted"
    (target,) = journal["targets"]
    assert target["injected_verified"] and target["recovered_verified"]
    assert len(journal["windows"]) == 3  # injected, paused, resumed, paused, resumed, deleted
    report = server.api.get(f"/api/v1/runs/{run_id}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "StressChaos" in report.text

    assert server.stop() == 0, server.runner.output
    lab.assert_all_gone(baseline)


def test_a_schedule_spawns_runs_forbids_overlap_keeps_its_history_and_stops_when_deleted(
        host_lab: HostLab, serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()
    schedule = f"""\
apiVersion: chaos-mesh.org/v1alpha1
kind: Schedule
metadata: {{name: burner, namespace: {lab.namespace}}}
spec:
  schedule: "@every 2s"
  concurrencyPolicy: Forbid
  historyLimit: 2
  type: StressChaos
  stressChaos:
    mode: all
    selector: {{namespaces: [{lab.namespace}], labelSelectors: {{app: worker}}}}
    stressors: {{cpu: {{workers: 1, load: 10}}}}
    duration: 3s
"""
    created = server.post_yaml("/api/v1/schedules", schedule)
    assert created.status_code == 201, created.text
    assert (created.json()["schedule"], created.json()["concurrency_policy"]) == ("@every 2s", "Forbid")

    seen: dict[str, dict[str, Any]] = {}
    most_active = most_kept = 0

    def observe() -> int:
        nonlocal most_active, most_kept
        items = server.api.get("/api/v1/experiments", params={"namespace": lab.namespace}).json()["items"]
        for item in items:
            seen[item["name"]] = item
        most_active = max(most_active, sum(1 for item in items if item["active"]))
        most_kept = max(most_kept, len(items))
        return len(seen)

    eventually(lambda: observe() >= 4, "four runs spawned")
    detail = server.api.get(f"/api/v1/schedules/{lab.namespace}/burner").json()

    assert most_active == 1, "Forbid let two runs overlap"
    assert most_kept <= 2, f"historyLimit 2 kept {most_kept} runs"
    for name, item in seen.items():
        assert re.fullmatch(r"burner-[bcdfghjklmnpqrstvwxz2456789]{5}", name), name
        assert item["schedule"] == "burner"
    made = [item["name"] for item in detail["experiments"]]
    assert 1 <= len(made) <= 2 and set(made) <= set(seen)
    assert sorted(ref["name"] for ref in detail["active"]) == sorted(made)
    assert detail["last_schedule_time"] is not None
    reasons = [event["reason"] for event in detail["events"]]
    assert reasons.count("Spawned") >= 4 and "Forbid" in reasons, reasons
    obj = server.experiment(made[0])["object"]
    assert obj["metadata"]["labels"] == {"managed-by": "burner"}
    assert obj["metadata"]["ownerReferences"][0]["uid"] == created.json()["uid"]
    finished = [item for item in seen.values() if item["outcome"]]
    assert finished and all(item["outcome"] == "Completed" for item in finished)

    deleted = server.api.delete(f"/api/v1/schedules/{lab.namespace}/burner", params={"wait": "true"})
    assert deleted.status_code == 200, deleted.text
    assert server.api.get(f"/api/v1/schedules/{lab.namespace}/burner").status_code == 404
    assert server.api.get("/api/v1/experiments", params={"namespace": lab.namespace}).json()["items"] == []
    time.sleep(4.5)  # two more periods: nothing spawns any more
    assert server.api.get("/api/v1/experiments", params={"namespace": lab.namespace}).json()["items"] == []
    assert lab.snapshot() == baseline

    assert server.stop() == 0, server.runner.output
    lab.assert_all_gone(baseline)


# ---- the serve process going away -----------------------------------------------------------------------------


def test_sigkill_of_serve_leaves_nothing_behind(host_lab: HostLab, serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()
    assert server.post_yaml("/api/v1/experiments", stress_text(lab, "burn", load=50)).status_code == 201
    assert server.post_yaml("/api/v1/experiments", lab.partition("cut").read_text()).status_code == 201
    eventually(lambda: all(server.experiment(name)["phase"] == "Running" for name in ("burn", "cut")),
               "both experiments injected")
    assert lab.spawned() and lab.http().startswith("blocked")

    killed_at = server.runner.kill(signal.SIGKILL)
    clean_at = lab.wait_clean(baseline)
    took = clean_at - killed_at
    print(f"\nSIGKILL of serve: no residue {took:.2f} s after the kill")
    assert took <= RECOVERED_WITHIN, f"faults outlived serve by {took:.2f} s (promise: {RECOVERED_WITHIN} s)"
    assert lab.http() == "200"
    for name in ("burn", "cut"):
        row = lab.wait_finished(name)
        assert (row.outcome, row.owner) == ("Interrupted", ""), row
        assert "died; recovered by the watchdog" in row.reason
    lab.assert_all_gone(baseline)


def test_sigterm_recovers_everything_and_exits_0(host_lab: HostLab, serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()
    assert server.post_yaml("/api/v1/experiments", stress_text(lab, "burn", load=50)).status_code == 201
    assert server.post_yaml("/api/v1/experiments", lab.partition("cut").read_text()).status_code == 201
    paused_schedule = f"""\
apiVersion: chaos-mesh.org/v1alpha1
kind: Schedule
metadata:
  name: later
  namespace: {lab.namespace}
  annotations: {{experiment.chaos-mesh.org/pause: "true"}}
spec:
  schedule: "0 3 * * *"
  type: StressChaos
  stressChaos: {{mode: all, selector: {{labelSelectors: {{app: worker}}}}, stressors: {{cpu: {{workers: 1}}}}}}
"""
    assert server.post_yaml("/api/v1/schedules", paused_schedule).status_code == 201
    eventually(lambda: all(server.experiment(name)["phase"] == "Running" for name in ("burn", "cut")),
               "both experiments injected")

    code = server.stop(signal.SIGTERM)
    assert code == 0, server.runner.output
    assert lab.snapshot() == baseline  # recovered before it exited, not by the watchdog afterwards
    for name in ("burn", "cut"):
        row = lab.row(name)
        assert (row.outcome, row.owner) == ("Interrupted", ""), row
        assert "SIGTERM" in row.reason
    with Store.open(lab.state_dir) as store:
        assert store.get_schedule(lab.namespace, "later").owner == ""  # nobody fires it now
    lab.assert_all_gone(baseline)


def test_halt_stops_everything_and_refuses_runs_until_released(host_lab: HostLab,
                                                              serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()
    assert server.post_yaml("/api/v1/experiments", stress_text(lab, "burn", load=50)).status_code == 201
    eventually(lambda: server.experiment("burn")["phase"] == "Running", "the stress is injected")

    halted = server.api.post("/api/v1/halt", json={"reason": "game day over"})
    assert halted.status_code == 200, halted.text
    assert halted.json()["halted"] and halted.json()["errors"] == []
    assert halted.json()["stopped"] == [f"StressChaos/{lab.namespace}/burn"]
    assert lab.snapshot() == baseline
    row = server.experiment("burn")
    assert (row["outcome"], row["active"]) == ("Aborted", False)
    refused = server.post_yaml("/api/v1/experiments", stress_text(lab, "again"))
    assert refused.status_code == 409 and "halted" in refused.json()["problems"][0]
    assert server.anonymous.get("/healthz").json()["halted"]

    released = server.api.post("/api/v1/halt/release")
    assert released.status_code == 200 and not released.json()["halted"]
    assert server.post_yaml("/api/v1/experiments", stress_text(lab, "again", duration="2s")).status_code == 201
    eventually(lambda: not server.experiment("again")["active"], "the run after the release completes")
    assert server.experiment("again")["outcome"] == "Completed"

    assert server.stop() == 0, server.runner.output
    lab.assert_all_gone(baseline)


def test_a_probe_given_with_the_submission_guards_the_run(host_lab: HostLab, serve: Callable[[], Serve]) -> None:
    lab = host_lab
    baseline = lab.snapshot()
    server = serve()
    manifest = yaml.safe_load(stress_text(lab, "guarded", duration="30s", load=50))
    probe = {"command": ["sh", "-c", f"test ! -e {lab.tmp / 'broken'}"], "interval_seconds": 0.2,
             "failure_threshold": 2}
    created = server.api.post("/api/v1/experiments", json={"manifest": manifest, "probe": probe})
    assert created.status_code == 201, created.text
    eventually(lambda: server.experiment("guarded")["phase"] == "Running", "the stress is injected")

    (lab.tmp / "broken").write_text("")  # the steady state is lost: the run aborts and recovers
    row = eventually(lambda: (found := server.experiment("guarded"))["outcome"] and found, "the run aborts")
    assert row["outcome"] == "Aborted" and "steady state lost" in row["reason"], row
    assert lab.snapshot() == baseline
    journal = server.api.get(f"/api/v1/runs/{row['run_id']}/journal").json()
    assert journal["probe"]["verdict"] == "Failed"
    assert [sample["ok"] for sample in journal["probe"]["samples"]][-2:] == [False, False]

    bad = server.api.post("/api/v1/experiments", json={"manifest": manifest, "probe": {"url": "http://x/",
                                                                                       "command": ["true"]}})
    assert bad.status_code == 422 and "give exactly one" in bad.json()["problems"][0], bad.json()

    assert server.stop() == 0, server.runner.output
    lab.assert_all_gone(baseline)
