"""Certificates for the admission webhooks: a private CA, a serving certificate, and the caBundle.

The API server calls the webhooks over TLS and trusts only the CA named in each webhook
configuration's ``clientConfig.caBundle``. :func:`ensure_serving_cert` keeps a CA and a serving
certificate in one directory (reusing them while they are good, renewing them when they come
near expiry or no longer cover the server's names) and :func:`inject_ca_bundle` writes the CA
into the webhook configurations. The certificates are made with the agent's TLS helpers.

When the CA itself is replaced, the bundle carries the new CA *and* the old one while the old
one is still valid: the server may keep presenting its old certificate until it reloads, and
the API server must accept both in the meantime.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from faultmesh.agent.rpc.tls import Issued, issue, make_ca

from .kube import Kube, KubeError, WebhookKind

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
#: What the API server should trust: the current CA, plus the previous one during a CA change.
CA_BUNDLE_FILE = "ca-bundle.crt"
#: The names Kubernetes gives a TLS Secret's entries, so a mounted Secret fits the same directory.
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"

CA_VALIDITY = datetime.timedelta(days=5 * 365)
SERVING_VALIDITY = datetime.timedelta(days=365)
#: Renew this long before expiry: long enough for a controller restarted daily to catch it.
RENEW_BEFORE = datetime.timedelta(days=30)

CA_COMMON_NAME = "faultmesh webhook CA"
#: The serving certificate's subject when no host name is short enough for it.
SERVING_COMMON_NAME = "faultmesh webhook"
MAX_COMMON_NAME = 64


@dataclass(frozen=True)
class ServingCert:
    """The files the webhook server uses and the PEM bundle its callers must trust."""

    directory: Path
    cert_file: Path
    key_file: Path
    ca_bundle: bytes
    not_after: datetime.datetime
    #: What this call renewed: "", "certificate" or "CA and certificate", with the reason.
    renewed: str = ""

    @property
    def rotated(self) -> bool:
        return bool(self.renewed)


def service_hosts(service: str, namespace: str, cluster_domain: str = "cluster.local") -> tuple[str, ...]:
    """The DNS names the API server may use to reach a webhook Service (``service.namespace.svc`` first)."""
    return (
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
        f"{service}.{namespace}",
        service,
    )


def rotation_reason(
    cert_pem: bytes,
    ca_pem: bytes,
    hosts: Iterable[str],
    *,
    now: datetime.datetime | None = None,
    renew_before: datetime.timedelta = RENEW_BEFORE,
) -> str | None:
    """Why the serving certificate ``cert_pem`` must be renewed, or None while it is good.

    It is renewed when it is unreadable, not signed by the CA, not yet or no longer valid, due
    to expire within ``renew_before``, or missing one of ``hosts`` among its names.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return "the certificate or the CA is not readable PEM"
    if not _signed_by(cert, ca):
        return "the certificate is not signed by the current CA"
    if now < cert.not_valid_before_utc:
        return f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now >= cert.not_valid_after_utc - renew_before:
        return f"the certificate expires at {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    missing = sorted(set(hosts) - _names_of(cert))
    if missing:
        return f"the certificate does not name {', '.join(missing)}"
    return None


def ensure_serving_cert(
    directory: Path,
    hosts: tuple[str, ...],
    *,
    now: datetime.datetime | None = None,
    renew_before: datetime.timedelta = RENEW_BEFORE,
    validity: datetime.timedelta = SERVING_VALIDITY,
    ca_validity: datetime.timedelta = CA_VALIDITY,
) -> ServingCert:
    """Make or renew the CA and the serving certificate for ``hosts`` in ``directory``; idempotent.

    The CA is kept while it has more than ``renew_before`` + ``validity`` left (so a certificate
    it signs never outlives it); otherwise a new CA is made. The serving certificate is renewed
    whenever :func:`rotation_reason` gives a reason. Files are replaced atomically; keys are 0600.
    """
    if not hosts:
        raise ValueError("a serving certificate needs at least one host name or IP address")
    if ca_validity <= renew_before + validity:
        raise ValueError("the CA must outlive a serving certificate plus the renewal margin")
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    renewed = ""

    ca = _read_issued(directory / CA_CERT_FILE, directory / CA_KEY_FILE)
    replaced_ca_pem: bytes | None = None
    ca_reason = _ca_reason(ca, now, renew_before + validity)
    if ca is None or ca_reason:
        # A CA certificate whose key is gone (a Secret made elsewhere) may still sign what other servers present.
        replaced_ca_pem = ca.cert_pem if ca else _readable_certificate(directory / CA_CERT_FILE)
        ca = make_ca(CA_COMMON_NAME, validity=ca_validity)
        write_atomic(directory / CA_KEY_FILE, ca.key_pem, private=True)
        write_atomic(directory / CA_CERT_FILE, ca.cert_pem, private=False)
        renewed = f"CA and certificate ({ca_reason or 'no CA yet'})"

    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    reason = renewed or _serving_reason(cert_path, key_path, ca.cert_pem, hosts, now, renew_before)
    if reason:
        serving = issue(ca, _common_name(hosts), server=True, hosts=hosts, validity=validity)
        # Key first: a reader that sees the new certificate must find its key already there.
        write_atomic(key_path, serving.key_pem, private=True)
        write_atomic(cert_path, serving.cert_pem, private=False)
        renewed = renewed or f"certificate ({reason})"

    bundle = _bundle(ca.cert_pem, replaced_ca_pem, directory / CA_BUNDLE_FILE, now)
    write_atomic(directory / CA_BUNDLE_FILE, bundle, private=False)
    not_after = x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_after_utc
    return ServingCert(directory, cert_path, key_path, bundle, not_after, renewed)


async def inject_ca_bundle(
    kube: Kube, ca_bundle: bytes, *, mutating: Iterable[str] = (), validating: Iterable[str] = ()
) -> list[str]:
    """Write ``ca_bundle`` into the named webhook configurations; return those that changed."""
    changed: list[str] = []
    for name in mutating:
        if await kube.set_webhook_ca_bundle("mutating", name, ca_bundle):
            changed.append(f"mutatingwebhookconfiguration/{name}")
    for name in validating:
        if await kube.set_webhook_ca_bundle("validating", name, ca_bundle):
            changed.append(f"validatingwebhookconfiguration/{name}")
    return changed


@dataclass(frozen=True)
class Injection:
    """What :func:`inject_ca_bundle_by_name` did: configurations it changed, and names it found as neither kind."""

    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


async def inject_ca_bundle_by_name(kube: Kube, ca_bundle: bytes, names: Iterable[str]) -> Injection:
    """Write ``ca_bundle`` into the webhook configurations called ``names``, mutating or validating.

    A name is looked up as both kinds (it may be both); one that is neither is reported, not an error:
    configurations are often applied after the controller starts.
    """
    changed: list[str] = []
    missing: list[str] = []
    kinds: tuple[WebhookKind, ...] = ("mutating", "validating")
    for name in names:
        found = False
        for kind in kinds:
            try:
                if await kube.set_webhook_ca_bundle(kind, name, ca_bundle):
                    changed.append(f"{kind}webhookconfiguration/{name}")
                found = True
            except KubeError as error:
                if error.status != 404:
                    raise
        if not found:
            missing.append(name)
    return Injection(tuple(changed), tuple(missing))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    found = set(names.get_values_for_type(x509.DNSName))
    found.update(str(address) for address in names.get_values_for_type(x509.IPAddress))
    return found


def _common_name(hosts: tuple[str, ...]) -> str:
    # Clients match the SAN names; the subject only needs one, and X.509 caps it at 64 characters, which
    # "<service>.<namespace>.svc" can pass.
    return next((host for host in hosts if len(host) <= MAX_COMMON_NAME), SERVING_COMMON_NAME)


def _canonical(host: str) -> str:
    # "::1" and "0:0::1" are one address; a certificate lists it one way.
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _serving_reason(
    cert_path: Path, key_path: Path, ca_pem: bytes, hosts: tuple[str, ...], now: datetime.datetime,
    renew_before: datetime.timedelta,
) -> str | None:
    try:
        cert_pem = cert_path.read_bytes()
        key_pem = key_path.read_bytes()
    except FileNotFoundError:
        return "no certificate yet"
    reason = rotation_reason(cert_pem, ca_pem, [_canonical(h) for h in hosts], now=now, renew_before=renew_before)
    if reason:
        return reason
    try:
        key = Issued(cert_pem, key_pem).private_key()
    except (ValueError, TypeError, AssertionError):
        return "the key is not a readable EC private key"
    cert_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    own_key = key.public_key().public_numbers()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or cert_key.public_numbers() != own_key:
        return "the key does not belong to the certificate"
    return None


def _read_issued(cert_path: Path, key_path: Path) -> Issued | None:
    try:
        issued = Issued(cert_path.read_bytes(), key_path.read_bytes())
        issued.certificate()
        issued.private_key()
    except (FileNotFoundError, ValueError, TypeError, AssertionError):
        return None
    return issued


def _readable_certificate(path: Path) -> bytes | None:
    try:
        pem = path.read_bytes()
        x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError):
        return None
    return pem


def _ca_reason(ca: Issued | None, now: datetime.datetime, needed: datetime.timedelta) -> str | None:
    if ca is None:
        return None
    cert = ca.certificate()
    if now >= cert.not_valid_after_utc - needed:
        return f"the CA expires at {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def _bundle(ca_pem: bytes, replaced_ca_pem: bytes | None, bundle_path: Path, now: datetime.datetime) -> bytes:
    """The current CA first, then at most one earlier CA that is still valid.

    The earlier one is the CA just replaced, or else the one the existing bundle carried, so a
    bundle never grows past two.
    """
    current = ca_pem.strip()
    candidates: list[bytes] = []
    if replaced_ca_pem is not None:
        candidates.append(replaced_ca_pem)
    elif bundle_path.exists():
        # An unreadable old bundle is simply not carried over.
        with contextlib.suppress(ValueError):
            candidates.extend(
                cert.public_bytes(Encoding.PEM) for cert in x509.load_pem_x509_certificates(bundle_path.read_bytes())
            )
    for pem in candidates:
        if pem.strip() != current and x509.load_pem_x509_certificate(pem).not_valid_after_utc > now:
            return current + b"\n" + pem.strip() + b"\n"
    return current + b"\n"


def write_atomic(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` with ``data`` in one step (mode 0600 if ``private``, else 0644).

    Readers (the server reloading its certificate) never see a half-written file.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise

