"""Self-managed webhook certificates: the Secret is the one store every replica adopts, renews and publishes from.

The API side is an in-memory stand-in with the API server's rules that matter here: resourceVersions, 404 for a
missing object, 409 for a create of an existing one or an update from a stale version.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509

from faultmesh.agent.rpc.tls import issue, make_ca
from faultmesh.controller.certrotation import (
    DEFAULT_CONFIGURATIONS,
    DEFAULT_SECRET,
    STORED_FILES,
    CertificateKeeper,
    SelfManagedCerts,
    WebhookCertOptionError,
    adopt,
    directory_files,
    kept_certificates,
    secret_body,
    secret_files,
    webhook_cert_options,
)
from faultmesh.controller.certs import (
    CA_BUNDLE_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    ensure_serving_cert,
)
from faultmesh.controller.kube import Kube, KubeError, ResourceType

NAMESPACE = "faultmesh"
CONFIGURATIONS = {
    ("mutating", "faultmesh-mutation"),
    ("validating", "faultmesh-validation"),
    ("validating", "faultmesh-validate-auth"),
}


class Api:
    """Secrets and webhook configurations' caBundles, as the API server keeps them."""

    def __init__(self, configurations: set[tuple[str, str]] = CONFIGURATIONS) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.bundles: dict[tuple[str, str], bytes | None] = dict.fromkeys(configurations)
        self.version = 0
        self.writes = 0
        #: Called after each caBundle patch: a test's chance to change the world meanwhile.
        self.after_patch: Callable[[], None] = lambda: None

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.writes += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.secrets[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any]:
        await asyncio.sleep(0)
        if name not in self.secrets:
            raise KubeError(f"secrets {namespace}/{name} not found", 404)
        return copy.deepcopy(self.secrets[name])

    async def create(
        self, resource: ResourceType, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        await asyncio.sleep(0)
        if body["metadata"]["name"] in self.secrets:
            raise KubeError("already exists", 409)
        return self._stored(body)

    async def replace(self, resource: ResourceType, body: Mapping[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        current = self.secrets.get(body["metadata"]["name"])
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
            raise KubeError("the object has been modified", 409)
        return self._stored(body)

    async def set_webhook_ca_bundle(self, kind: str, name: str, ca_bundle_pem: bytes) -> bool:
        await asyncio.sleep(0)
        if (kind, name) not in self.bundles:
            raise KubeError(f"{kind} webhook configuration {name} not found", 404)
        changed = self.bundles[(kind, name)] != ca_bundle_pem
        self.bundles[(kind, name)] = ca_bundle_pem
        self.after_patch()
        return changed

    def secret_files(self, name: str = DEFAULT_SECRET) -> dict[str, bytes]:
        return secret_files(self.secrets[name])


def keeper(api: Api, directory: Path, **settings: Any) -> CertificateKeeper:
    return CertificateKeeper(cast(Kube, api), SelfManagedCerts(directory, NAMESPACE, **settings))


def certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_the_first_replica_makes_the_certificates_stores_them_and_writes_the_ca_bundle(tmp_path: Path) -> None:
    api = Api()
    injection = asyncio.run(keeper(api, tmp_path / "a", extra_hosts=("127.0.0.1",)).sync())
    stored = api.secret_files()
    assert sorted(stored) == sorted(STORED_FILES)
    assert stored == directory_files(tmp_path / "a")
    secret = api.secrets[DEFAULT_SECRET]
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "faultmesh-controller"
    assert set(api.bundles.values()) == {stored[CA_BUNDLE_FILE]}
    assert sorted(injection.changed) == [
        "mutatingwebhookconfiguration/faultmesh-mutation",
        "validatingwebhookconfiguration/faultmesh-validate-auth",
        "validatingwebhookconfiguration/faultmesh-validation",
    ]
    assert injection.missing == ()
    names = certificate(stored[CERT_FILE]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "faultmesh-controller.faultmesh.svc" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_another_replica_serves_the_stored_certificates_and_writes_nothing(tmp_path: Path) -> None:
    api = Api()
    asyncio.run(keeper(api, tmp_path / "a").sync())
    writes = api.writes
    injection = asyncio.run(keeper(api, tmp_path / "b").sync())
    assert directory_files(tmp_path / "b") == directory_files(tmp_path / "a") == api.secret_files()
    assert api.writes == writes
    assert injection.changed == ()


def test_replicas_starting_together_end_with_one_ca(tmp_path: Path) -> None:
    api = Api()

    async def both() -> None:
        await asyncio.gather(*(keeper(api, tmp_path / name).sync() for name in ("a", "b", "c")))

    asyncio.run(both())
    stored = api.secret_files()
    for name in ("a", "b", "c"):
        assert directory_files(tmp_path / name) == stored
    assert set(api.bundles.values()) == {stored[CA_BUNDLE_FILE]}
    assert stored[CA_BUNDLE_FILE].count(b"BEGIN CERTIFICATE") == 1  # no replica's own CA crept in


def near_expiry_files(hosts: tuple[str, ...]) -> dict[str, bytes]:
    """A CA with 100 days left (less than a certificate's life plus the margin) and a certificate it signed."""
    ca = make_ca("about to expire", validity=datetime.timedelta(days=100))
    cert = issue(ca, "faultmesh test webhook", server=True, hosts=hosts, validity=datetime.timedelta(days=50))
    return {
        CA_CERT_FILE: ca.cert_pem,
        CA_KEY_FILE: ca.key_pem,
        CA_BUNDLE_FILE: ca.cert_pem,
        CERT_FILE: cert.cert_pem,
        KEY_FILE: cert.key_pem,
    }


def test_a_ca_near_expiry_in_the_secret_is_replaced_and_both_cas_are_trusted(tmp_path: Path) -> None:
    api = Api()
    files = near_expiry_files(SelfManagedCerts(tmp_path, NAMESPACE).hosts)
    old_ca = certificate(files[CA_CERT_FILE])
    api._stored(secret_body(DEFAULT_SECRET, NAMESPACE, files, None))

    asyncio.run(keeper(api, tmp_path / "a").sync())
    stored = api.secret_files()
    new_ca = certificate(stored[CA_CERT_FILE])
    assert new_ca.serial_number != old_ca.serial_number
    certificate(stored[CERT_FILE]).verify_directly_issued_by(new_ca)
    bundle = x509.load_pem_x509_certificates(stored[CA_BUNDLE_FILE])
    assert [c.serial_number for c in bundle] == [new_ca.serial_number, old_ca.serial_number]
    assert set(api.bundles.values()) == {stored[CA_BUNDLE_FILE]}
    assert directory_files(tmp_path / "a") == stored


def test_a_certificate_of_a_new_ca_is_served_only_once_the_bundle_trusting_it_is_written(tmp_path: Path) -> None:
    api = Api()
    replica = keeper(api, tmp_path / "a")
    asyncio.run(replica.sync())
    first = replica.settings.cert_file.read_bytes()
    served_at_patch: list[bytes] = []
    api.after_patch = lambda: served_at_patch.append(replica.settings.cert_file.read_bytes())
    api._stored(
        secret_body(DEFAULT_SECRET, NAMESPACE, near_expiry_files(replica.settings.hosts), api.secrets[DEFAULT_SECRET])
    )

    asyncio.run(replica.sync())
    assert served_at_patch
    assert set(served_at_patch) == {first}  # the bundle went out while the earlier pair was served
    served = replica.settings.cert_file.read_bytes()
    assert served == api.secret_files()[CERT_FILE] != first
    new_ca = x509.load_pem_x509_certificates(api.secret_files()[CA_BUNDLE_FILE])[0]
    certificate(served).verify_directly_issued_by(new_ca)
    assert set(api.bundles.values()) == {api.secret_files()[CA_BUNDLE_FILE]}


def test_a_bundle_that_cannot_be_written_keeps_the_served_pair_unless_there_is_none(tmp_path: Path) -> None:
    api = Api()

    def refuse() -> None:
        raise KubeError("patch validatingwebhookconfiguration: forbidden", 403)

    api.after_patch = refuse
    replica = keeper(api, tmp_path / "a")
    with pytest.raises(KubeError, match="forbidden"):
        asyncio.run(replica.sync())
    assert replica.ready.is_set()  # nothing was served: the server may start on the pair it has
    first = replica.settings.cert_file.read_bytes()
    api._stored(
        secret_body(DEFAULT_SECRET, NAMESPACE, near_expiry_files(replica.settings.hosts), api.secrets[DEFAULT_SECRET])
    )
    with pytest.raises(KubeError, match="forbidden"):
        asyncio.run(replica.sync())
    assert api.secret_files()[CERT_FILE] != first  # renewed and stored...
    assert replica.settings.cert_file.read_bytes() == first  # ...but not served before its bundle is out


def test_a_secret_made_elsewhere_keeps_its_other_keys_and_its_ca_stays_trusted(tmp_path: Path) -> None:
    """A Secret without the CA's key (as an installer makes it): a new CA, the old one still in the bundle."""
    api = Api()
    made = ensure_serving_cert(tmp_path / "elsewhere", ("faultmesh-controller.faultmesh.svc",))
    body = secret_body(
        DEFAULT_SECRET,
        NAMESPACE,
        {
            CA_CERT_FILE: (tmp_path / "elsewhere" / CA_CERT_FILE).read_bytes(),
            CERT_FILE: made.cert_file.read_bytes(),
            KEY_FILE: made.key_file.read_bytes(),
        },
        None,
    )
    body["data"]["note"] = base64.b64encode(b"kept").decode()
    api._stored(body)

    asyncio.run(keeper(api, tmp_path / "a").sync())
    secret = api.secrets[DEFAULT_SECRET]
    assert base64.b64decode(secret["data"]["note"]) == b"kept"
    bundle = x509.load_pem_x509_certificates(api.secret_files()[CA_BUNDLE_FILE])
    assert len(bundle) == 2
    assert bundle[1] == certificate((tmp_path / "elsewhere" / CA_CERT_FILE).read_bytes())


def test_a_secret_changed_while_the_bundle_is_written_is_looked_at_again(tmp_path: Path) -> None:
    """A slower replica must not leave its older bundle in the configurations."""
    api = Api()
    asyncio.run(keeper(api, tmp_path / "a").sync())
    rotated_elsewhere = tmp_path / "elsewhere"
    adopt(rotated_elsewhere, api.secret_files())
    later = certificate(api.secret_files()[CA_CERT_FILE]).not_valid_after_utc - datetime.timedelta(days=100)
    ensure_serving_cert(rotated_elsewhere, SelfManagedCerts(rotated_elsewhere, NAMESPACE).hosts, now=later)  # new CA
    newer = directory_files(rotated_elsewhere)
    patches = 0

    def another_replica_rotates() -> None:
        nonlocal patches
        patches += 1
        if patches == 1:
            api._stored(secret_body(DEFAULT_SECRET, NAMESPACE, newer, api.secrets[DEFAULT_SECRET]))

    api.after_patch = another_replica_rotates
    # b has an old copy in its directory, so its bundle differs from the configurations' only once rotated.
    adopt(tmp_path / "b", directory_files(tmp_path / "a"))
    asyncio.run(keeper(api, tmp_path / "b").sync())
    assert set(api.bundles.values()) == {newer[CA_BUNDLE_FILE]}
    assert directory_files(tmp_path / "b") == newer


def test_configurations_not_there_yet_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    api = Api({("validating", "faultmesh-validation")})
    injection = asyncio.run(keeper(api, tmp_path / "a").sync())
    assert injection.missing == ("faultmesh-mutation", "faultmesh-validate-auth")
    assert (
        "no mutating or validating webhook configuration is called faultmesh-mutation or"
        " faultmesh-validate-auth (yet)" in caplog.text
    )
    assert api.bundles[("validating", "faultmesh-validation")] is not None


def test_the_server_may_start_once_the_directory_holds_a_pair(tmp_path: Path) -> None:
    api = Api()
    settings = SelfManagedCerts(tmp_path / "a", NAMESPACE, check_interval=3600)

    async def scenario() -> tuple[bool, bool]:
        async with kept_certificates(cast(Kube, api), settings) as kept:
            return kept.ready.is_set(), settings.cert_file.is_file() and settings.key_file.is_file()

    assert asyncio.run(scenario()) == (True, True)


def test_the_directory_is_made_to_hold_exactly_the_stored_files(tmp_path: Path) -> None:
    ensure_serving_cert(tmp_path, ("a.example",))
    files = {CERT_FILE: b"cert", KEY_FILE: b"key"}
    assert adopt(tmp_path, files)
    assert directory_files(tmp_path) == files
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / CERT_FILE).stat().st_mode) == 0o644
    assert not adopt(tmp_path, files)


def test_secret_entries_that_are_not_base64_count_as_missing() -> None:
    body = secret_body("s", NAMESPACE, {CERT_FILE: b"cert"}, None)
    body["data"][KEY_FILE] = "not base64!"
    assert secret_files(body) == {CERT_FILE: b"cert"}
    assert secret_files(None) == {}


def test_an_update_keeps_the_secret_as_it_is_besides_the_certificates() -> None:
    current: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "s", "namespace": NAMESPACE, "resourceVersion": "7"},
        "data": {"other": "eA==", CERT_FILE: "b2xk", KEY_FILE: "b2xk", CA_KEY_FILE: "b2xk"},
    }
    body = secret_body("s", NAMESPACE, {CERT_FILE: b"new", KEY_FILE: b"new"}, current)
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["type"] == "Opaque"
    assert secret_files(body) == {CERT_FILE: b"new", KEY_FILE: b"new"}
    assert body["data"]["other"] == "eA=="
    assert current["data"][CERT_FILE] == "b2xk"  # not changed in place


def test_the_certificate_names_the_service_and_the_extra_hosts_once() -> None:
    settings = SelfManagedCerts(Path("/d"), "chaos", service="hooks", extra_hosts=("10.0.0.1", "hooks.chaos.svc"))
    assert settings.hosts == ("hooks.chaos.svc", "hooks.chaos.svc.cluster.local", "hooks.chaos", "hooks", "10.0.0.1")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"cert_dir": Path("/d"), "cert": "FILE", "key": "FILE"},
            "--webhook-cert-dir (the controller keeps its own certificates) and --webhook-cert/--webhook-key"
            " (certificates from files) exclude each other",
        ),
        ({"cert": "FILE"}, "--webhook-cert and --webhook-key go together"),
        ({"cert": "FILE", "key": Path("/nonexistent/tls.key")}, "--webhook-key: missing or not a file"),
        ({"service": "hooks", "secret": "s"}, "--webhook-service, --webhook-secret: only with --webhook-cert-dir"),
        (
            {"hosts": ["1.2.3.4"], "configurations": ["x"], "check_interval": 5.0},
            "--webhook-host, --webhook-configuration, --webhook-cert-check-interval: only with --webhook-cert-dir",
        ),
        ({"cert_dir": Path("/d"), "check_interval": 0.0}, "--webhook-cert-check-interval: 0 must be more than 0"),
    ],
    ids=["dir-and-files", "cert-without-key", "missing-key", "dir-options-alone", "more-dir-options", "interval"],
)
def test_options_that_do_not_fit_are_refused_naming_them(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    (tmp_path / "tls.crt").write_text("x")
    given: dict[str, Any] = {"cert": None, "key": None, "cert_dir": None, "namespace": NAMESPACE}
    given.update({k: tmp_path / "tls.crt" if v == "FILE" else v for k, v in options.items()})
    with pytest.raises(WebhookCertOptionError) as refused:
        webhook_cert_options(**given)
    assert message in str(refused.value)


def test_options_give_the_self_managed_settings_with_deploys_defaults(tmp_path: Path) -> None:
    assert webhook_cert_options(cert=None, key=None, cert_dir=None, namespace=NAMESPACE) is None
    settings = webhook_cert_options(cert=None, key=None, cert_dir=tmp_path, namespace="chaos")
    assert settings == SelfManagedCerts(tmp_path, "chaos")
    assert (settings.service, settings.secret, settings.configurations, settings.check_interval) == (
        "faultmesh-controller",
        DEFAULT_SECRET,
        DEFAULT_CONFIGURATIONS,
        3600.0,
    )


def test_the_command_refuses_options_that_do_not_fit_with_status_2(tmp_path: Path) -> None:
    pair = ensure_serving_cert(tmp_path / "files", ("127.0.0.1",))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "faultmesh.cli",
            "controller",
            "--insecure-agents",
            f"--webhook-cert-dir={tmp_path}",
            f"--webhook-cert={pair.cert_file}",
            f"--webhook-key={pair.key_file}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2
    assert (
        "--webhook-cert-dir (the controller keeps its own certificates) and --webhook-cert/--webhook-key"
        " (certificates from files) exclude each other" in result.stderr
    )
    assert "Traceback" not in result.stderr
