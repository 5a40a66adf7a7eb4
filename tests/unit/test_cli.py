"""The CLI: exit codes and messages for validate, crds and version; never a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from faultmesh.cli import app

runner = CliRunner()

GOOD = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: ok}
spec: {action: pod-kill, mode: one, selector: {}}
"""


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("faultmesh ")


def test_validate_good_file_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "PodChaos default/ok" in result.stdout


def test_validate_bad_file_exits_two_and_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("mode: one", "mode: fixed, value: '0'"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "spec.value" in result.stderr
    assert "Traceback" not in result.output


def test_validate_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: no such file" in result.stderr


def test_validate_reports_every_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text("kind: [")
    result = runner.invoke(app, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert "malformed YAML" in result.stderr
    assert "PodChaos default/ok" in result.stdout


def test_validate_reads_stdin() -> None:
    result = runner.invoke(app, ["validate", "-"], input=GOOD)
    assert result.exit_code == 0, result.output


def test_unknown_option_is_a_usage_error() -> None:
    result = runner.invoke(app, ["validate", "--frobnicate"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_crds_prints_one_crd_per_kind() -> None:
    result = runner.invoke(app, ["crds"])
    assert result.exit_code == 0
    documents = list(yaml.safe_load_all(result.stdout))
    assert all(doc["kind"] == "CustomResourceDefinition" for doc in documents)
    assert "podchaos.chaos-mesh.org" in [doc["metadata"]["name"] for doc in documents]


def test_field_paths_with_indexes_are_printed_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "phase.yaml"
    path.write_text(GOOD.replace("selector: {}", "selector: {podPhaseSelectors: [Runing]}"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "spec.selector.podPhaseSelectors[0]" in result.stderr


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_plan_pod_kill_targets_pods_and_container_kill_targets_containers() -> None:
    result = runner.invoke(
        app,
        ["plan", str(EXAMPLES / "pod-kill.yaml"), str(EXAMPLES / "container-kill.yaml"),
         "--pods", str(EXAMPLES / "cluster.yaml"), "--seed", "1", "-o", "json"],
    )
    assert result.exit_code == 0, result.output
    import json

    pod_kill, container_kill = json.loads(result.stdout)
    (selector,) = pod_kill["selectors"]
    assert len(selector["pods"]) == 1 and selector["containers"] == []
    (selector,) = container_kill["selectors"]
    assert len(selector["pods"]) == 2
    assert [target["id"].rsplit("/", 1)[1] for target in selector["containers"]] == ["envoy", "envoy"]


def test_plan_is_reproducible_with_a_seed() -> None:
    args = ["plan", str(EXAMPLES / "network-delay.yaml"), "--pods", str(EXAMPLES / "cluster.yaml"), "--seed", "7",
            "-o", "json"]
    assert runner.invoke(app, args).stdout == runner.invoke(app, args).stdout


def test_plan_with_a_malformed_pods_file(tmp_path: Path) -> None:
    pods = tmp_path / "pods.yaml"
    pods.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{image: a}]}\n")
    result = runner.invoke(app, ["plan", str(EXAMPLES / "pod-kill.yaml"), "--pods", str(pods)])
    assert result.exit_code == 2
    assert "spec.containers[0].name" in result.stderr
    assert "Traceback" not in result.output


def test_plan_with_a_missing_pods_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(EXAMPLES / "pod-kill.yaml"), "--pods", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "none.yaml" in result.stderr


def test_plan_with_an_unsupported_field_selector_names_the_field(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GOOD.replace("selector: {}", "selector: {fieldSelectors: {spec.bogus: x}}"))
    result = runner.invoke(app, ["plan", str(manifest), "--pods", str(EXAMPLES / "cluster.yaml")])
    assert result.exit_code == 2
    assert "spec.selector.fieldSelectors" in result.stderr
