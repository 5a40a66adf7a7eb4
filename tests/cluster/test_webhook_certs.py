"""The admission webhooks of a running `faultmesh controller` across certificate renewals, on the real API server.

The controller runs as a process (no agents: its webhooks are what is tested). The test-bed routes no
Service, so the webhook configurations call it by URL at 127.0.0.1, scoped by a namespace label to the
test's namespace, and its certificates name 127.0.0.1. Every check is of an effect: what the API server
admits (a server-side dry run: defaults filled in by the mutating webhook, a bad spec refused by the
validating one), the certificate a fresh TLS connection to the webhook port is shown, and what the Secret
and the webhook configurations hold. The configurations are deleted before the controllers stop, so a
webhook without a server never refuses anything of another test.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from faultmesh.agent.rpc.tls import issue, make_ca
from faultmesh.controller.certrotation import SERVED_DIR, SelfManagedCerts
from faultmesh.controller.certs import (
    CA_BUNDLE_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    ensure_serving_cert,
)
from faultmesh.controller.webhooks import webhook_configurations

from .conftest import REPO, Cluster
from .test_webhooks import installed_crds, network_delay  # noqa: F401 (installed_crds is a fixture)

PYTHON = REPO / ".venv" / "bin" / "python"
SCOPE_LABEL = "faultmesh.io/webhook-cert-test"
HOST = "127.0.0.1"
SECRET = "faultmesh-webhook-certs"
#: Generous bounds for "eventually": a cold controller start imports a lot on 2 shared cores.
READY_S = 180.0
CHANGE_S = 90.0
#: Short timers, so that a renewal is seen in seconds rather than the defaults' 30 s and one hour.
RELOAD_INTERVAL_S = 0.5
CHECK_INTERVAL_S = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ControllerProcess:
    """`faultmesh controller` serving its webhooks on ``port``; its output in a log file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def served(self) -> x509.Certificate | None:
        """The certificate a new TLS connection to the webhook port is shown; None while nothing answers."""
        try:
            pem = ssl.get_server_certificate((HOST, self.port), timeout=5)
        except (OSError, ssl.SSLError):
            return None
        return x509.load_pem_x509_certificate(pem.encode())

    def served_serial(self) -> int | None:
        served = self.served()
        return None if served is None else served.serial_number

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@dataclass
class Webhooks:
    """One test's controllers and the webhook configurations calling them, all gone afterwards."""

    cluster: Cluster
    namespace: str
    workdir: Path
    controllers: list[ControllerProcess] = field(default_factory=list)
    configurations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [configuration["metadata"]["name"] for configuration in self.configurations]

    def register(self, port: int, ca_bundle: bytes | None = None) -> None:
        """Mutating, validating and auth configurations calling https://127.0.0.1:port, for this namespace only."""
        self.configurations = webhook_configurations(
            name=f"fm-certs-{self.namespace}",
            url=f"https://{HOST}:{port}",
            kinds_served=("NetworkChaos",),
            namespace_selector={"matchLabels": {SCOPE_LABEL: self.namespace}},
            timeout_seconds=10,
            ca_bundle=ca_bundle,
        )
        self.cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump_all(self.configurations))

    def start(self, name: str, port: int, *flags: str) -> ControllerProcess:
        log = self.workdir / f"{name}.log"
        argv = [
            str(PYTHON),
            "-m",
            "faultmesh.cli",
            "controller",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={self.namespace}",
            "--insecure-agents",
            "--metrics-port=0",
            f"--webhook-port={port}",
            f"--webhook-cert-reload-interval={RELOAD_INTERVAL_S}",
            *flags,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        controller = ControllerProcess(process, port, log)
        self.controllers.append(controller)
        return controller

    def logs(self) -> str:
        return "\n".join(f"---- {c.log.name}:\n{c.tail()}" for c in self.controllers)

    def wait_for(self, what: str, predicate: Any, timeout: float = CHANGE_S) -> None:
        for controller in self.controllers:
            assert controller.process.poll() is None, f"{controller.log.name} exited:\n{controller.tail()}"
        try:
            self.cluster.wait_for(what, predicate, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None

    def admission(self) -> str | None:
        """None when the API server admits a good experiment (defaults filled) and refuses a bad one; else why not."""
        good = network_delay("probe", self.namespace)
        created = self.cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(good), check=False
        )
        if created.returncode != 0:
            return f"a valid NetworkChaos was refused: {created.stderr.strip()}"
        if json.loads(created.stdout)["spec"]["selector"].get("namespaces") != [self.namespace]:
            return "the mutating webhook did not fill in the selector's namespace"
        bad = network_delay("probe-bad", self.namespace, mode="fixed", value="none")
        refused = self.cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(bad), check=False)
        if refused.returncode == 0 or 'admission webhook "vnetworkchaos.faultmesh.io" denied' not in refused.stderr:
            return f"an invalid NetworkChaos was not refused by the webhook: {refused.stderr.strip()}"
        return None

    def wait_admitting(self, timeout: float = CHANGE_S) -> None:
        last: list[str | None] = [None]

        def admitting() -> bool:
            last[0] = self.admission()
            return last[0] is None

        try:
            self.wait_for("the webhooks to admit", admitting, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\nlast answer: {last[0]}") from None

    def ca_bundles(self) -> set[bytes]:
        """Every distinct caBundle in the configurations' webhooks (b"" where there is none)."""
        bundles: set[bytes] = set()
        for configuration in self.configurations:
            stored = self.cluster.get_json(configuration["kind"].lower(), configuration["metadata"]["name"])
            for webhook in stored["webhooks"]:
                bundles.add(base64.b64decode(webhook["clientConfig"].get("caBundle") or ""))
        return bundles

    def secret_files(self) -> dict[str, bytes]:
        found = self.cluster.kubectl("get", "secret", SECRET, "-n", self.namespace, "-o", "json", check=False)
        if found.returncode != 0:
            return {}
        data = json.loads(found.stdout).get("data") or {}
        return {name: base64.b64decode(value) for name, value in data.items()}


@pytest.fixture
def webhooks(cluster: Cluster, installed_crds: None, namespace: str, tmp_path: Path) -> Iterator[Webhooks]:  # noqa: F811
    cluster.kubectl("label", "namespace", namespace, f"{SCOPE_LABEL}={namespace}")
    world = Webhooks(cluster, namespace, tmp_path)
    try:
        yield world
    finally:
        # The configurations first: a webhook with failurePolicy Fail and no server refuses everything it covers.
        for configuration in world.configurations:
            cluster.kubectl(
                "delete",
                configuration["kind"].lower(),
                configuration["metadata"]["name"],
                "--ignore-not-found",
                check=False,
            )
        for controller in world.controllers:
            controller.stop()
        print(world.logs())


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def test_certificate_files_replaced_on_disk_are_served_without_a_restart(webhooks: Webhooks, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    first = ensure_serving_cert(certs, (HOST,), validity=datetime.timedelta(days=20))
    controller = webhooks.start(
        "files", free_port(), f"--webhook-cert={first.cert_file}", f"--webhook-key={first.key_file}"
    )
    webhooks.register(controller.port, first.ca_bundle)
    webhooks.wait_admitting(timeout=READY_S)
    assert controller.served_serial() == serial(first.cert_file.read_bytes())

    # cert-manager's way: a newly issued pair (same CA) replaces the files; the process is not told.
    second = ensure_serving_cert(certs, (HOST,))  # 20 days left, under the renewal margin
    assert second.renewed.startswith("certificate (the certificate expires at")
    renewed = serial(second.cert_file.read_bytes())
    webhooks.wait_for(
        "the controller to present the renewed certificate", lambda: controller.served_serial() == renewed
    )
    assert controller.process.poll() is None  # the same process, not restarted
    webhooks.wait_admitting()

    # A key that does not belong to the certificate: said in the log, the renewed pair stays in service.
    shutil.copy(ensure_serving_cert(tmp_path / "foreign", (HOST,)).key_file, certs / KEY_FILE)
    webhooks.wait_for(
        "the controller to report the unusable pair",
        lambda: "do not form a usable certificate and key" in controller.log.read_text(errors="replace"),
    )
    assert controller.served_serial() == renewed  # a fresh handshake still succeeds, with the renewed pair
    assert webhooks.admission() is None

    # Issued again properly, it is taken up.
    third = ensure_serving_cert(certs, (HOST,))
    assert third.renewed == "certificate (the key does not belong to the certificate)"
    webhooks.wait_for(
        "the controller to present the reissued certificate",
        lambda: controller.served_serial() == serial(third.cert_file.read_bytes()),
    )
    webhooks.wait_admitting()


def near_expiry(hosts: tuple[str, ...]) -> dict[str, bytes]:
    """A CA with 100 days left (under a certificate's year plus the 30-day margin) and a certificate it signed."""
    ca = make_ca("faultmesh test CA, about to expire", validity=datetime.timedelta(days=100))
    cert = issue(ca, "faultmesh test webhook", server=True, hosts=hosts, validity=datetime.timedelta(days=50))
    return {
        CA_CERT_FILE: ca.cert_pem,
        CA_KEY_FILE: ca.key_pem,
        CA_BUNDLE_FILE: ca.cert_pem,
        CERT_FILE: cert.cert_pem,
        KEY_FILE: cert.key_pem,
    }


def test_self_managed_certificates_are_shared_injected_and_rotated(webhooks: Webhooks, tmp_path: Path) -> None:
    ports = {"a": free_port(), "b": free_port()}
    webhooks.register(ports["a"])  # no caBundle: the controller writes it
    replicas = [
        webhooks.start(
            name,
            port,
            f"--webhook-cert-dir={tmp_path / name}",
            f"--webhook-host={HOST}",
            f"--webhook-cert-check-interval={CHECK_INTERVAL_S}",
            *(f"--webhook-configuration={configuration}" for configuration in webhooks.names),
        )
        for name, port in ports.items()
    ]

    def bundle_injected() -> bool:
        stored = webhooks.secret_files().get(CA_BUNDLE_FILE)
        return stored is not None and webhooks.ca_bundles() == {stored}

    webhooks.wait_for("the Secret's CA bundle in every webhook", bundle_injected, timeout=READY_S)
    webhooks.wait_admitting(timeout=READY_S)
    stored = webhooks.secret_files()
    assert x509.load_pem_x509_certificates(stored[CA_BUNDLE_FILE]) == [
        x509.load_pem_x509_certificate(stored[CA_CERT_FILE])
    ]

    def both_serve(pem: bytes) -> bool:
        return all(replica.served_serial() == serial(pem) for replica in replicas)

    # Two replicas, one CA: both present the Secret's certificate, each from its own directory.
    webhooks.wait_for("both replicas to present the Secret's certificate", lambda: both_serve(stored[CERT_FILE]))
    for name in ports:
        assert (tmp_path / name / SERVED_DIR / CERT_FILE).read_bytes() == stored[CERT_FILE]

    # Forced rotation: the Secret now holds a CA too close to its end to sign another year-long certificate.
    foreign = near_expiry(SelfManagedCerts(tmp_path, webhooks.namespace, extra_hosts=(HOST,)).hosts)
    patch = {"data": {name: base64.b64encode(content).decode() for name, content in foreign.items()}}
    webhooks.cluster.kubectl(
        "patch", "secret", SECRET, "-n", webhooks.namespace, "--type=merge", "-p", json.dumps(patch)
    )

    def rotated() -> bool:
        now = webhooks.secret_files()
        return bool(now) and now[CA_CERT_FILE] not in (stored[CA_CERT_FILE], foreign[CA_CERT_FILE])

    webhooks.wait_for("a new CA in the Secret", rotated)
    renewed = webhooks.secret_files()
    new_ca = x509.load_pem_x509_certificate(renewed[CA_CERT_FILE])
    # The replaced CA stays trusted while it is valid, behind the new one.
    assert [c.serial_number for c in x509.load_pem_x509_certificates(renewed[CA_BUNDLE_FILE])] == [
        new_ca.serial_number,
        serial(foreign[CA_CERT_FILE]),
    ]
    webhooks.wait_for(
        "the new CA bundle in every webhook", lambda: webhooks.ca_bundles() == {webhooks.secret_files()[CA_BUNDLE_FILE]}
    )
    webhooks.wait_for(
        "both replicas to present a certificate of the new CA", lambda: both_serve(webhooks.secret_files()[CERT_FILE])
    )
    for replica in replicas:
        served = replica.served()
        assert served is not None
        served.verify_directly_issued_by(new_ca)
        assert replica.process.poll() is None
    webhooks.wait_admitting()
    logs = webhooks.logs()
    assert "renewed the webhook CA and certificate (the CA expires at" in logs
    assert "Traceback" not in logs
