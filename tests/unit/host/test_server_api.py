"""``faultmesh serve``'s HTTP surface without a running engine: authentication, request checking, error shape.

Everything here is refused before the server would touch the engine, so a server that was never started
answers; the node tier (tests/node/test_host_serve.py) runs the real thing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faultmesh.host.server import HostServer, ServeError, ServeOptions, create_app, parse_listen, read_token

TOKEN = "t0ken-" + "x" * 26
AUTH = {"Authorization": f"Bearer {TOKEN}"}

STRESS = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: StressChaos
metadata: {name: burn, namespace: demo}
spec:
  mode: sometimes
  selector: {labelSelectors: {app: web}}
  stressors: {cpu: {workers: 1}}
"""


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(HostServer(ServeOptions(state_dir=tmp_path)), TOKEN), raise_server_exceptions=False)


def assert_error_shape(body: dict[str, object]) -> None:
    assert set(body) == {"error", "problems"}
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["problems"], list)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-of-some-length"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
])
def test_requests_without_the_token_are_refused(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/v1/experiments"), ("POST", "/api/v1/experiments"),
                         ("DELETE", "/api/v1/schedules/demo/burn"), ("POST", "/api/v1/halt")):
        answer = client.request(method, path, headers=headers, content=STRESS)
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"] == "Bearer"
        body = answer.json()
        assert_error_shape(body)
        assert "token" in body["error"] or "Bearer" in body["problems"][0]


def test_an_invalid_manifest_names_the_field(client: TestClient) -> None:
    answer = client.post("/api/v1/experiments", content=STRESS, headers={**AUTH, "content-type": "application/yaml"})
    assert answer.status_code == 422
    body = answer.json()
    assert_error_shape(body)
    assert body["error"] == "invalid manifest"
    assert any("spec.mode" in problem and "sometimes" in problem for problem in body["problems"]), body
    assert all("Traceback" not in problem for problem in body["problems"])


def test_a_json_manifest_is_checked_the_same_way(client: TestClient) -> None:
    manifest = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "StressChaos",
                "metadata": {"name": "burn"}, "spec": {"mode": "all", "selector": {}, "stressors": {}}}
    for body in (manifest, {"manifest": manifest}, {"manifest": json.dumps(manifest)}):
        answer = client.post("/api/v1/experiments", json=body, headers=AUTH)
        assert answer.status_code == 422, answer.text
        problems = answer.json()["problems"]
        assert any("spec.stressors: needs at least one stressor" in problem for problem in problems), problems
        if not isinstance(body.get("manifest"), str):
            # Line numbers would point into JSON the client never wrote.
            assert not any(problem.startswith("line ") for problem in problems), problems


def test_a_submission_with_unknown_fields_is_refused_by_name(client: TestClient) -> None:
    answer = client.post("/api/v1/experiments", headers=AUTH,
                         json={"manifest": STRESS, "probe": {"url": "http://x/", "intervals": 3}, "extra": 1})
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert any(problem.startswith("probe.intervals:") for problem in problems), problems
    assert any(problem.startswith("extra:") for problem in problems), problems


@pytest.mark.parametrize(("body", "content_type", "status", "fragment"), [
    ("kind: [", "application/yaml", 422, "line"),
    ("{not json", "application/json", 400, "Expecting"),
    ("<xml/>", "application/xml", 415, "application/yaml"),
])
def test_unreadable_bodies(client: TestClient, body: str, content_type: str, status: int, fragment: str) -> None:
    answer = client.post("/api/v1/experiments", content=body, headers={**AUTH, "content-type": content_type})
    assert answer.status_code == status
    assert_error_shape(answer.json())
    assert fragment in json.dumps(answer.json())


def test_a_schedule_goes_to_its_own_endpoint(client: TestClient) -> None:
    schedule = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: Schedule
metadata: {name: nightly, namespace: demo}
spec:
  schedule: "@every 2s"
  type: StressChaos
  stressChaos: {mode: all, selector: {labelSelectors: {app: web}}, stressors: {cpu: {workers: 1}}}
"""
    answer = client.post("/api/v1/experiments", content=schedule, headers={**AUTH, "content-type": "text/yaml"})
    assert answer.status_code == 422
    assert "/api/v1/schedules" in answer.json()["problems"][0]
    bad_cron = schedule.replace("@every 2s", "61 * * * *")
    answer = client.post("/api/v1/schedules", content=bad_cron, headers={**AUTH, "content-type": "text/yaml"})
    assert answer.status_code == 422
    assert any("spec.schedule" in problem for problem in answer.json()["problems"]), answer.json()


def test_one_experiment_per_request(client: TestClient) -> None:
    two = STRESS.replace("sometimes", "all") + "---\n" + STRESS.replace("sometimes", "all").replace("burn", "b2")
    answer = client.post("/api/v1/experiments", content=two, headers={**AUTH, "content-type": "application/yaml"})
    assert answer.status_code == 422
    assert "2 experiments" in answer.json()["problems"][0]


def test_bad_query_parameters_are_422_in_the_same_shape(client: TestClient) -> None:
    answer = client.delete("/api/v1/experiments/demo/burn?wait=perhaps", headers=AUTH)
    assert answer.status_code == 422
    assert_error_shape(answer.json())
    assert answer.json()["problems"][0].startswith("query.wait:")


def test_unknown_routes_answer_json(client: TestClient) -> None:
    answer = client.get("/api/v2/nothing", headers=AUTH)
    assert answer.status_code == 404
    assert_error_shape(answer.json())


def test_the_openapi_spec_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/v1/experiments", "/api/v1/experiments/{namespace}/{name}",
                 "/api/v1/experiments/{namespace}/{name}/pause", "/api/v1/runs/{run_id}/journal",
                 "/api/v1/schedules", "/api/v1/schedules/{namespace}/{name}/resume", "/api/v1/halt",
                 "/api/v1/halt/release", "/healthz"):
        assert path in paths, path
    assert "Submission" in spec["components"]["schemas"]
    assert "ProbeOptions" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    body = paths["/api/v1/experiments"]["post"]["requestBody"]["content"]
    assert {"application/yaml", "application/json"} <= set(body)
    assert "swagger" in client.get("/docs").text.lower()


def test_without_auth_the_token_is_not_asked_for(tmp_path: Path) -> None:
    open_client = TestClient(create_app(HostServer(ServeOptions(state_dir=tmp_path)), None))
    answer = open_client.post("/api/v1/experiments", content=STRESS, headers={"content-type": "application/yaml"})
    assert answer.status_code == 422


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8737", ("127.0.0.1", 8737)),
    (":9000", ("127.0.0.1", 9000)),
    ("[::1]:8737", ("::1", 8737)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8737", "host", "1.2.3.4:99999", "[::1]", "a:b:c"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ServeError, match="--listen"):
        parse_listen(text)


def test_token_files(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    good.chmod(0o600)
    assert read_token(good) == TOKEN
    for content, message in (("", "is empty"), ("short", "at least 16"), ("two words here and more", "one word")):
        bad = tmp_path / "bad"
        bad.write_text(content)
        with pytest.raises(ServeError, match=message):
            read_token(bad)
    with pytest.raises(ServeError, match="no such file"):
        read_token(tmp_path / "missing")
