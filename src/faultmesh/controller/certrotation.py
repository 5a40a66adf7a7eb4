"""The controller's own webhook certificates (``faultmesh controller --webhook-cert-dir DIR``).

With no cert-manager and no certificates made at install time, the controller keeps a CA and a serving
certificate for its webhook Service itself, renews them before they expire
(:func:`.certs.ensure_serving_cert`) and writes the CA into the webhook configurations' caBundle.

Every replica serves the webhooks, and the API server trusts only the CAs in the caBundle, so all
replicas must present certificates of one CA. The rule: the Secret ``--webhook-secret`` in the
controller's namespace is the one store, and ``DIR`` is each replica's own copy of it. Each replica, at
start and then every check interval:

1. reads the Secret and makes ``DIR`` hold exactly what it holds;
2. renews in ``DIR`` what is due (usually nothing);
3. if ``DIR`` now differs from the Secret (a renewal, or no Secret yet), writes it back, guarded by the
   Secret's resourceVersion: of replicas renewing at once, one wins; the others get a conflict, go back
   to 1 and take the winner's certificates;
4. writes the Secret's CA bundle into the webhook configurations (an idempotent patch), then reads the
   Secret again and starts over if it changed meanwhile, so a slower replica never leaves an older
   bundle behind;
5. copies the certificate and key into ``DIR/served``, the pair its server presents (reloaded when the
   files change, :mod:`.certreload`). Only now: a certificate of a new CA is served once the bundle that
   trusts it has been written.

No replica needs to lead for this, so the webhooks answer before an election is decided. A replica whose
copy is older than the Secret's still presents a certificate the bundle trusts: certificates are renewed
30 days before they expire, and a replaced CA stays in the bundle while it is valid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .certs import (
    CA_BUNDLE_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    Injection,
    ServingCert,
    ensure_serving_cert,
    inject_ca_bundle_by_name,
    service_hosts,
    write_atomic,
)
from .kube import Kube, KubeError, ResourceType

log = logging.getLogger("faultmesh.controller.certrotation")

SECRETS = ResourceType("", "v1", "secrets", "Secret")
#: The files of ``DIR`` the Secret carries, under the same names, keys before the certificates they belong to.
STORED_FILES = (CA_KEY_FILE, CA_CERT_FILE, CA_BUNDLE_FILE, KEY_FILE, CERT_FILE)
PRIVATE_FILES = frozenset({CA_KEY_FILE, KEY_FILE})
#: The subdirectory of ``DIR`` with the pair the server presents (step 5 of the rule above).
SERVED_DIR = "served"

#: deploy/'s names: the webhook Service, the Secret and the three webhook configurations.
DEFAULT_SERVICE = "faultmesh-controller"
DEFAULT_SECRET = "faultmesh-webhook-certs"
DEFAULT_CONFIGURATIONS = ("faultmesh-mutation", "faultmesh-validation", "faultmesh-validate-auth")
CHECK_INTERVAL_S = 3600.0
#: A configuration not there yet is looked for again this soon: it is often applied after the controller starts.
MISSING_RETRY_S = 30.0
#: After a failed round, the first retry comes this soon, and the delay doubles up to RETRY_MAX_S.
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
#: Times in a row the Secret may change under one round before the round gives up (until the next retry).
MAX_ATTEMPTS = 5
SECRET_LABELS = {
    "app.kubernetes.io/name": "faultmesh",
    "app.kubernetes.io/component": "webhook",
    "app.kubernetes.io/managed-by": "faultmesh-controller",
}


@dataclass(frozen=True)
class SelfManagedCerts:
    """Where the controller keeps its webhook certificates, what they must name, and whom to tell."""

    directory: Path
    #: The controller's namespace: the Service's and the Secret's.
    namespace: str
    service: str = DEFAULT_SERVICE
    #: Names or addresses the certificate must carry besides the Service's (a webhook called by URL).
    extra_hosts: tuple[str, ...] = ()
    secret: str = DEFAULT_SECRET
    #: Webhook configurations (mutating or validating) whose caBundle is kept equal to the CA bundle.
    configurations: tuple[str, ...] = DEFAULT_CONFIGURATIONS
    check_interval: float = CHECK_INTERVAL_S

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*service_hosts(self.service, self.namespace), *self.extra_hosts)))

    @property
    def cert_file(self) -> Path:
        """The certificate the server presents."""
        return self.directory / SERVED_DIR / CERT_FILE

    @property
    def key_file(self) -> Path:
        return self.directory / SERVED_DIR / KEY_FILE


class WebhookCertOptionError(ValueError):
    """The command line's webhook certificate options do not fit together; the message names them."""


def webhook_cert_options(
    *,
    cert: Path | None,
    key: Path | None,
    cert_dir: Path | None,
    namespace: str,
    service: str | None = None,
    hosts: Sequence[str] = (),
    secret: str | None = None,
    configurations: Sequence[str] = (),
    check_interval: float | None = None,
) -> SelfManagedCerts | None:
    """The self-managed settings the options ask for (None: files or no webhooks), or why they cannot work."""
    if cert_dir is not None and (cert is not None or key is not None):
        raise WebhookCertOptionError(
            "--webhook-cert-dir (the controller keeps its own certificates) and --webhook-cert/--webhook-key"
            " (certificates from files) exclude each other; give one or the other"
        )
    if (cert is None) != (key is None):
        raise WebhookCertOptionError("--webhook-cert and --webhook-key go together")
    unreadable = [
        option
        for option, path in (("--webhook-cert", cert), ("--webhook-key", key))
        if path is not None and not path.is_file()
    ]
    if unreadable:
        raise WebhookCertOptionError(f"{', '.join(unreadable)}: missing or not a file")
    if cert_dir is None:
        given = [
            option
            for option, value in (
                ("--webhook-service", service),
                ("--webhook-host", hosts or None),
                ("--webhook-secret", secret),
                ("--webhook-configuration", configurations or None),
                ("--webhook-cert-check-interval", check_interval),
            )
            if value is not None
        ]
        if given:
            raise WebhookCertOptionError(f"{', '.join(given)}: only with --webhook-cert-dir")
        return None
    if check_interval is not None and check_interval <= 0:
        raise WebhookCertOptionError(f"--webhook-cert-check-interval: {check_interval:g} must be more than 0")
    return SelfManagedCerts(
        directory=cert_dir,
        namespace=namespace,
        service=service or DEFAULT_SERVICE,
        extra_hosts=tuple(hosts),
        secret=secret or DEFAULT_SECRET,
        configurations=tuple(configurations) or DEFAULT_CONFIGURATIONS,
        check_interval=check_interval or CHECK_INTERVAL_S,
    )


# ---- the Secret and the directory -------------------------------------------------------------------------


def secret_files(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """The certificate files a Secret holds, by file name; an entry that is not base64 counts as missing."""
    data = (secret or {}).get("data") or {}
    files: dict[str, bytes] = {}
    for name in STORED_FILES:
        if name in data:
            with contextlib.suppress(binascii.Error, ValueError, TypeError):
                files[name] = base64.b64decode(data[name], validate=True)
    return files


def directory_files(directory: Path) -> dict[str, bytes]:
    """The certificate files ``directory`` holds, by file name."""
    files: dict[str, bytes] = {}
    for name in STORED_FILES:
        with contextlib.suppress(FileNotFoundError):
            files[name] = (directory / name).read_bytes()
    return files


def adopt(directory: Path, files: Mapping[str, bytes]) -> bool:
    """Make ``directory`` hold exactly ``files`` of the stored ones (others removed); True if anything changed."""
    directory.mkdir(parents=True, exist_ok=True)
    current = directory_files(directory)
    if current == dict(files):
        return False
    for name in STORED_FILES:
        if name in files:
            if current.get(name) != files[name]:
                write_atomic(directory / name, files[name], private=name in PRIVATE_FILES)
        elif name in current:
            (directory / name).unlink(missing_ok=True)
    return True


def secret_body(
    name: str, namespace: str, files: Mapping[str, bytes], current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The Secret to write: ``current`` (kept as it is otherwise, resourceVersion included) holding ``files``."""
    encoded = {file: base64.b64encode(content).decode() for file, content in files.items()}
    if current is None:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(SECRET_LABELS)},
            "type": "kubernetes.io/tls",
            "data": encoded,
        }
    body = copy.deepcopy(dict(current))
    others = {key: value for key, value in (body.get("data") or {}).items() if key not in STORED_FILES}
    body["data"] = {**others, **encoded}
    return body


def _version(secret: Mapping[str, Any] | None) -> str | None:
    return None if secret is None else str((secret.get("metadata") or {}).get("resourceVersion") or "")


# ---- the keeper ---------------------------------------------------------------------------------------------


class CertificateKeeper:
    """One replica's part of the rule in this module's docstring, on a timer."""

    def __init__(self, kube: Kube, settings: SelfManagedCerts) -> None:
        self.kube = kube
        self.settings = settings
        #: Set once ``DIR/served`` holds a pair the first time: the server can start.
        self.ready = asyncio.Event()
        self._missing_reported: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"secret {self.settings.namespace}/{self.settings.secret}"

    async def sync(self) -> Injection:
        """One round: ``DIR`` and the Secret agree, renewed where due, and the configurations carry the bundle."""
        for _ in range(MAX_ATTEMPTS):
            settled = await self._settle()
            if settled is None:
                continue
            serving, version = settled
            try:
                injection = await inject_ca_bundle_by_name(self.kube, serving.ca_bundle, self.settings.configurations)
            except BaseException:
                # The pair served so far stays, unless there is none: then a pair the bundle may not trust yet
                # is better than a server that cannot start.
                if not self.ready.is_set():
                    self._serve(serving)
                raise
            self._serve(serving)
            if injection.changed:
                log.info("wrote the webhook CA bundle into %s", ", ".join(injection.changed))
            self._report_missing(injection.missing)
            if _version(await self._read()) == version:
                return injection
            log.info("%s changed while the CA bundle was written; looking again", self.where)
        raise KubeError(f"{self.where} changed {MAX_ATTEMPTS} times in a row while the certificates were checked")

    async def run(self) -> None:
        """:meth:`sync` now and every check interval, retrying failed rounds with backoff, until cancelled."""
        delay = RETRY_MIN_S
        while True:
            try:
                injection = await self.sync()
            except (KubeError, OSError, ValueError) as error:  # ValueError: names no certificate can carry
                log.error("webhook certificates: %s; trying again in %g s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            interval = self.settings.check_interval
            await asyncio.sleep(min(MISSING_RETRY_S, interval) if injection.missing else interval)

    async def _settle(self) -> tuple[ServingCert, str | None] | None:
        """Steps 1-3: the certificates ``DIR`` and the Secret both hold, and that Secret's resourceVersion.

        None when the Secret changed under this attempt (another replica wrote it): try again.
        """
        secret = await self._read()
        stored = secret_files(secret)
        directory = self.settings.directory
        if secret is not None and adopt(directory, stored):
            log.info("took the webhook certificates from %s", self.where)
        serving = ensure_serving_cert(directory, self.settings.hosts)
        files = directory_files(directory)
        if secret is not None and files == stored:
            return serving, _version(secret)
        body = secret_body(self.settings.secret, self.settings.namespace, files, secret)
        try:
            if secret is None:
                written = await self.kube.create(SECRETS, body)
            else:
                written = await self.kube.replace(SECRETS, body)
        except KubeError as error:
            if error.status == 409:  # created or changed by another replica meanwhile: take its certificates
                log.info("%s was written by someone else meanwhile; taking its certificates", self.where)
                return None
            raise
        what = f"renewed the webhook {serving.renewed}" if serving.rotated else "stored the webhook certificates"
        log.info("%s in %s", what, self.where)
        return serving, _version(written)

    def _serve(self, serving: ServingCert) -> None:
        # Key first: the reloader of this process cannot look in between (no await here), other readers could.
        adopt(
            self.settings.cert_file.parent,
            {KEY_FILE: serving.key_file.read_bytes(), CERT_FILE: serving.cert_file.read_bytes()},
        )
        self.ready.set()

    async def _read(self) -> dict[str, Any] | None:
        try:
            return await self.kube.get(SECRETS, self.settings.secret, self.settings.namespace)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def _report_missing(self, missing: tuple[str, ...]) -> None:
        if missing and missing != self._missing_reported:
            log.warning(
                "no mutating or validating webhook configuration is called %s (yet); the CA bundle is"
                " written once it exists",
                " or ".join(missing),
            )
        self._missing_reported = missing


@contextlib.asynccontextmanager
async def kept_certificates(kube: Kube, settings: SelfManagedCerts) -> AsyncIterator[CertificateKeeper]:
    """Keep the certificates while the block runs; it is entered once ``DIR/served`` holds a pair to serve."""
    keeper = CertificateKeeper(kube, settings)
    keeping = asyncio.create_task(keeper.run(), name="webhook-certificates")
    ready = asyncio.create_task(keeper.ready.wait())
    try:
        await asyncio.wait({keeping, ready}, return_when=asyncio.FIRST_COMPLETED)
        if keeping.done():
            keeping.result()  # run() only ends by a bug: raise it here rather than wait forever
        yield keeper
    finally:
        for task in (ready, keeping):
            task.cancel()
        await asyncio.gather(ready, keeping, return_exceptions=True)
