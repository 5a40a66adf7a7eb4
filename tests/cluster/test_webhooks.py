"""The admission webhooks on the real test-bed API server.

The webhook server runs as a process on 127.0.0.1 with a certificate for that address; the
webhook configurations call it by URL and are scoped by a namespace label to the namespaces
these tests create, so a webhook that fails (failurePolicy Fail) cannot disturb other tests.
They are deleted afterwards whatever happens.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from faultmesh.controller.certs import CERT_FILE, ensure_serving_cert, inject_ca_bundle
from faultmesh.controller.kube import Kube
from faultmesh.controller.webhooks import webhook_configurations

from .conftest import Cluster

FAULTMESH = Path(sys.executable).with_name("faultmesh")
SCOPE_LABEL = "faultmesh.io/webhook-test"
SERVER_START_TIMEOUT_S = 60
KINDS = ("NetworkChaos", "PodChaos")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WebhookServer:
    """A webhook server process and the webhook configurations that point at it."""

    process: subprocess.Popen[bytes]
    port: int
    cert_dir: Path
    log: Path
    scope: str
    configurations: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def served_certificate(self) -> x509.Certificate:
        pem = ssl.get_server_certificate(("127.0.0.1", self.port))
        return x509.load_pem_x509_certificate(pem.encode())


def start_server(cluster: Cluster, workdir: Path, name: str, *flags: str) -> WebhookServer:
    """Start the server (certificate for 127.0.0.1), wait for /healthz, register its configurations."""
    cert_dir = workdir / "certs"
    serving = ensure_serving_cert(cert_dir, ("127.0.0.1",))
    port = free_port()
    log = workdir / "webhooks.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "faultmesh.controller.webhooks", "--cert", str(serving.cert_file),
             "--key", str(serving.key_file), "--host", "127.0.0.1", "--port", str(port),
             "--kubeconfig", str(cluster.kubeconfig), "--cert-reload-interval", "0.5", *flags],
            stdout=out, stderr=subprocess.STDOUT,
        )
    scope = hashlib.sha1(f"{os.getpid()}-{name}".encode()).hexdigest()[:10]
    server = WebhookServer(process, port, cert_dir, log, scope, [])
    try:
        wait_healthy(server, cert_dir / "ca.crt")
        # No caBundle at first: certs.inject_ca_bundle writes it, as a controller would.
        server.configurations = webhook_configurations(
            name=f"faultmesh-test-{name}-{scope}", url=server.url, kinds_served=KINDS,
            namespace_selector={"matchLabels": {SCOPE_LABEL: scope}}, timeout_seconds=10,
        )
        cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump_all(server.configurations))
        asyncio.run(inject(cluster, server, serving.ca_bundle))
    except BaseException:
        stop_server(cluster, server)
        raise
    return server


def stop_server(cluster: Cluster, server: WebhookServer) -> None:
    # The configurations first: a registered webhook with failurePolicy Fail and no server refuses everything.
    for configuration in server.configurations:
        cluster.kubectl(
            "delete", configuration["kind"].lower(), configuration["metadata"]["name"], "--ignore-not-found",
            check=False,
        )
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)


async def inject(cluster: Cluster, server: WebhookServer, ca_bundle: bytes) -> list[str]:
    mutating = [c["metadata"]["name"] for c in server.configurations if c["kind"] == "MutatingWebhookConfiguration"]
    validating = [
        c["metadata"]["name"] for c in server.configurations if c["kind"] == "ValidatingWebhookConfiguration"
    ]
    async with await Kube.connect(cluster.kubeconfig) as kube:
        return await inject_ca_bundle(kube, ca_bundle, mutating=mutating, validating=validating)


def wait_healthy(server: WebhookServer, ca_file: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the webhook server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", context=context, timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    pytest.fail(f"the webhook server did not answer /healthz within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")


def network_delay(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "delay", "mode": "one", "selector": {"labelSelectors": {"app": "web"}}, "delay": {"latency": "10ms"},
    }
    body.update(spec)
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def wait_until_webhooks_answer(cluster: Cluster, server: WebhookServer, namespace: str) -> None:
    """The API server picks up new or changed configurations asynchronously: probe with dry runs."""
    probe = network_delay("probe", namespace)
    invalid = network_delay("probe-invalid", namespace, mode="fixed", value="none")
    last = ""

    def answering() -> bool:
        nonlocal last
        created = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(probe),
                                  check=False)
        refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(invalid), check=False)
        last = created.stderr + refused.stderr
        if created.returncode != 0:
            return False
        defaulted = json.loads(created.stdout)["spec"]["selector"].get("namespaces") == [namespace]
        return defaulted and refused.returncode != 0 and "admission webhook" in refused.stderr

    try:
        cluster.wait_for("the webhooks to answer", answering, timeout=60)
    except AssertionError:
        raise AssertionError(f"{last}\nserver log:\n{server.log_tail()}") from None


@pytest.fixture(scope="module")
def installed_crds(cluster: Cluster) -> None:
    output = subprocess.run([str(FAULTMESH), "crds"], capture_output=True, text=True, check=True).stdout
    crds = [doc for doc in yaml.safe_load_all(output) if doc]
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(crds))
    names = [f"crd/{crd['metadata']['name']}" for crd in crds]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.fixture(scope="module")
def webhooks(
    cluster: Cluster, installed_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookServer]:
    server = start_server(cluster, tmp_path_factory.mktemp("webhooks"), "main")
    try:
        yield server
    finally:
        stop_server(cluster, server)


@pytest.fixture
def make_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Namespaces for one test, labelled so that a given server's webhooks apply there; deleted afterwards."""
    made: list[str] = []
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]

    def make(role: str, server: WebhookServer | None = None) -> str:
        name = f"t-wh-{role}-{digest}"
        cluster.kubectl("create", "namespace", name)
        made.append(name)
        if server is not None:
            cluster.kubectl("label", "namespace", name, f"{SCOPE_LABEL}={server.scope}")
        return name

    try:
        yield make
    finally:
        for name in made:
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_valid_experiment_is_stored_with_the_defaults(
    cluster: Cluster, webhooks: WebhookServer, make_namespace: Callable[..., str]
) -> None:
    namespace = make_namespace("defaults", webhooks)
    wait_until_webhooks_answer(cluster, webhooks, namespace)
    manifest = network_delay("delay-web", namespace)
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    stored = cluster.get_json("networkchaos", "delay-web", "-n", namespace)
    assert stored["spec"]["selector"] == {"labelSelectors": {"app": "web"}, "namespaces": [namespace]}
    assert stored["spec"]["direction"] == "to"
    assert stored["spec"]["delay"] == {"latency": "10ms", "correlation": "0", "jitter": "0ms"}
    # A namespace outside the webhooks' scope is left alone: no defaults filled there.
    outside = make_namespace("outside")
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(network_delay("untouched", outside)))
    assert "namespaces" not in cluster.get_json("networkchaos", "untouched", "-n", outside)["spec"]["selector"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mode": "fixed", "value": "abc"}, 'spec.value: "abc" is not an integer; mode fixed needs a count > 0'),
        ({"mode": "fixed-percent", "value": "150"}, 'spec.value: "150" must be in (0,100] with mode fixed-percent'),
        ({"direction": "from"}, 'spec.direction: "from" needs a target (spec.target)'),
    ],
    ids=["fixed-value", "percent-range", "direction-without-target"],
)
def test_invalid_experiment_is_refused_with_the_field_path(
    cluster: Cluster, webhooks: WebhookServer, make_namespace: Callable[..., str], spec: dict[str, Any], message: str
) -> None:
    namespace = make_namespace("invalid", webhooks)
    wait_until_webhooks_answer(cluster, webhooks, namespace)
    result = cluster.kubectl("create", "-f", "-", stdin=json.dumps(network_delay("bad", namespace, **spec)),
                             check=False)
    assert result.returncode != 0
    assert 'admission webhook "vnetworkchaos.faultmesh.io" denied the request' in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert cluster.kubectl("get", "networkchaos", "bad", "-n", namespace, check=False).returncode != 0


def test_spec_is_immutable_but_metadata_and_status_change(
    cluster: Cluster, webhooks: WebhookServer, make_namespace: Callable[..., str]
) -> None:
    namespace = make_namespace("immutable", webhooks)
    wait_until_webhooks_answer(cluster, webhooks, namespace)
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(network_delay("fixed", namespace)))
    target = ["networkchaos", "fixed", "-n", namespace]

    changed = cluster.kubectl("patch", *target, "--type=merge", "-p", '{"spec":{"delay":{"latency":"20ms"}}}',
                              check=False)
    assert changed.returncode != 0
    assert "the spec of a NetworkChaos cannot be updated once created (changed: spec.delay.latency)" in changed.stderr
    assert cluster.get_json(*target)["spec"]["delay"]["latency"] == "10ms"

    cluster.kubectl("annotate", *target, "experiment.chaos-mesh.org/pause=true")
    cluster.kubectl("patch", *target, "--type=merge", "-p", '{"metadata":{"finalizers":["chaos-mesh/records"]}}')
    # Experiments have no status subresource (as in Chaos Mesh): the controller writes status with the object.
    cluster.kubectl("patch", *target, "--type=merge", "-p", '{"status":{"experiment":{"desiredPhase":"Stop"}}}')
    stored = cluster.get_json(*target)
    assert stored["metadata"]["annotations"]["experiment.chaos-mesh.org/pause"] == "true"
    assert stored["metadata"]["finalizers"] == ["chaos-mesh/records"]
    assert stored["status"]["experiment"]["desiredPhase"] == "Stop"

    cluster.kubectl("patch", *target, "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    cluster.kubectl("delete", *target, "--timeout=30s")


def grant_create(cluster: Cluster, namespace: str, user: str) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "chaos-author", "namespace": namespace},
        "rules": [{"apiGroups": ["chaos-mesh.org"], "resources": ["networkchaos"],
                   "verbs": ["create", "get", "list", "update", "patch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"chaos-author-{user}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "chaos-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding]))
    cluster.wait_for(
        f"{user} may create networkchaos in {namespace}",
        lambda: cluster.kubectl("auth", "can-i", "create", "networkchaos.chaos-mesh.org", "-n", namespace,
                                f"--as={user}", check=False).stdout.strip() == "yes",
    )


def test_user_needs_rights_in_every_namespace_the_selectors_reach(
    cluster: Cluster, webhooks: WebhookServer, make_namespace: Callable[..., str]
) -> None:
    home = make_namespace("home", webhooks)
    other = make_namespace("other", webhooks)
    wait_until_webhooks_answer(cluster, webhooks, home)
    grant_create(cluster, home, "alice")

    def create_as_alice(manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("create", "--as=alice", "-f", "-", stdin=json.dumps(manifest), check=False)

    # Her own namespace: the selector defaults to it, and she has the right there.
    own = create_as_alice(network_delay("own", home))
    assert own.returncode == 0, own.stderr

    elsewhere = create_as_alice(network_delay("elsewhere", home, selector={"namespaces": [other]}))
    assert elsewhere.returncode != 0
    assert 'admission webhook "vauth.faultmesh.io" denied the request' in elsewhere.stderr
    assert f'user "alice" may not create networkchaos in namespace "{other}", which spec.selector selects' \
        in elsewhere.stderr

    partition = network_delay("by-target", home)
    partition["spec"] = {
        "action": "partition", "mode": "one", "direction": "both", "selector": {"labelSelectors": {"app": "web"}},
        "target": {"mode": "all", "selector": {"namespaces": [other]}},
    }
    by_target = create_as_alice(partition)
    assert by_target.returncode != 0
    assert f'may not create networkchaos in namespace "{other}", which spec.target.selector selects' \
        in by_target.stderr

    by_pod_name = create_as_alice(network_delay("by-pod", home, selector={"pods": {other: ["db-0"]}}))
    assert by_pod_name.returncode != 0
    assert f'namespace "{other}"' in by_pod_name.stderr

    grant_create(cluster, other, "alice")
    allowed = create_as_alice(network_delay("elsewhere", home, selector={"namespaces": [other]}))
    assert allowed.returncode == 0, allowed.stderr
    stored = cluster.get_json("networkchaos", "elsewhere", "-n", home)
    assert stored["metadata"]["namespace"] == home
    assert stored["spec"]["selector"]["namespaces"] == [other]


def test_namespace_filter_refuses_experiments_reaching_no_opted_in_namespace(
    cluster: Cluster, installed_crds: None, make_namespace: Callable[..., str], tmp_path: Path
) -> None:
    server = start_server(cluster, tmp_path, "filter", "--filter-namespaces")
    try:
        namespace = make_namespace("filtered", server)
        closed = make_namespace("closed")
        wait_until_refused = network_delay("closed-only", namespace)

        # The probe would be refused by the filter here, so wait on that refusal instead.
        def refused() -> bool:
            result = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(wait_until_refused),
                                     check=False)
            return result.returncode != 0 and "admission webhook" in result.stderr

        cluster.wait_for("the filtering webhook to answer", refused, timeout=60)
        result = cluster.kubectl("create", "-f", "-", stdin=json.dumps(wait_until_refused), check=False)
        assert result.returncode != 0
        assert f'no namespace this object selects is open to chaos ("{namespace}")' in result.stderr
        assert "chaos-mesh.org/inject=enabled" in result.stderr

        cluster.kubectl("annotate", "namespace", namespace, "chaos-mesh.org/inject=enabled")
        mixed = network_delay("mixed", namespace, selector={"namespaces": [namespace, closed]})
        result = cluster.kubectl("create", "-f", "-", stdin=json.dumps(mixed), check=False)
        assert result.returncode == 0, result.stderr
        assert f'namespace "{closed}" is not annotated chaos-mesh.org/inject=enabled' in result.stderr  # a warning
    finally:
        stop_server(cluster, server)


def test_rotated_certificates_are_served_and_trusted(
    cluster: Cluster, webhooks: WebhookServer, make_namespace: Callable[..., str]
) -> None:
    """A CA change end to end: new files, the bundle (new CA + old) injected, the server reloads its certificate."""
    namespace = make_namespace("rotation", webhooks)
    wait_until_webhooks_answer(cluster, webhooks, namespace)
    old_ca = x509.load_pem_x509_certificate((webhooks.cert_dir / "ca.crt").read_bytes())
    ca_expiry = old_ca.not_valid_after_utc

    # Seen from a day when the CA is about to expire, everything is renewed.
    rotated = ensure_serving_cert(webhooks.cert_dir, ("127.0.0.1",), now=ca_expiry - datetime.timedelta(days=10))
    assert rotated.renewed.startswith("CA and certificate")
    assert rotated.ca_bundle.count(b"BEGIN CERTIFICATE") == 2
    changed = asyncio.run(inject(cluster, webhooks, rotated.ca_bundle))
    assert len(changed) == 3

    new_serial = x509.load_pem_x509_certificate((webhooks.cert_dir / CERT_FILE).read_bytes()).serial_number
    cluster.wait_for("the server to present the new certificate",
                     lambda: webhooks.served_certificate().serial_number == new_serial, timeout=30)
    new_ca = x509.load_pem_x509_certificate((webhooks.cert_dir / "ca.crt").read_bytes())
    assert new_ca.serial_number != old_ca.serial_number
    webhooks.served_certificate().verify_directly_issued_by(new_ca)
    wait_until_webhooks_answer(cluster, webhooks, namespace)
    configuration = cluster.get_json("validatingwebhookconfiguration", webhooks.configurations[1]["metadata"]["name"])
    for webhook in configuration["webhooks"]:
        assert webhook["clientConfig"]["caBundle"] == base64.b64encode(rotated.ca_bundle).decode()
