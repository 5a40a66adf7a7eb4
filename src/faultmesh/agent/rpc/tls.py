"""Mutual TLS for the agent's gRPC service, and the certificates it needs.

The agent runs privileged on every node, so whoever can call it can break any container there:
the server always asks for a client certificate and verifies it against the configured CA.
:func:`write_bundle` makes a private CA plus one server and one client certificate, for tests
and for host mode, where no cluster issues them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long generated certificates stay valid.
DEFAULT_VALIDITY = datetime.timedelta(days=365)
#: Names the generated server certificate answers to unless others are given.
DEFAULT_SERVER_HOSTS = ("localhost", "127.0.0.1", "::1")

CA_FILE = "ca.crt"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
CLIENT_CERT_FILE = "client.crt"
CLIENT_KEY_FILE = "client.key"


class TlsConfigError(ValueError):
    """The TLS paths are incomplete or unreadable; the message names which."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one side of a mutual-TLS connection: the CA to trust, our certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_options(cls, ca: Path | None, cert: Path | None, key: Path | None) -> TlsFiles | None:
        """All three paths, or none of them (None); anything in between is a mistake worth naming."""
        given = {"--tls-ca": ca, "--tls-cert": cert, "--tls-key": key}
        if not any(given.values()):
            return None
        missing = [flag for flag, path in given.items() if path is None]
        if missing:
            raise TlsConfigError(f"mutual TLS needs a CA, a certificate and a key: {', '.join(missing)} missing")
        assert ca is not None and cert is not None and key is not None
        return cls(ca, cert, key)

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA, certificate, key) as PEM bytes."""
        contents: list[bytes] = []
        for what, path in (("CA", self.ca), ("certificate", self.cert), ("key", self.key)):
            try:
                data = path.read_bytes()
            except OSError as error:
                raise TlsConfigError(f"cannot read the TLS {what} {path}: {error.strerror}") from None
            if b"-----BEGIN" not in data:
                raise TlsConfigError(f"the TLS {what} {path} is not PEM")
            contents.append(data)
        return contents[0], contents[1], contents[2]


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Credentials that refuse any client without a certificate signed by ``files.ca``."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Credentials that present our certificate and trust only servers signed by ``files.ca``."""
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM encoded."""

    cert_pem: bytes
    key_pem: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    organization = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "faultmesh")
    return x509.Name([organization, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "faultmesh agent CA", validity: datetime.timedelta = DEFAULT_VALIDITY) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: Issued,
    common_name: str,
    *,
    server: bool,
    hosts: tuple[str, ...] = (),
    validity: datetime.timedelta = DEFAULT_VALIDITY,
) -> Issued:
    """A leaf certificate signed by ``ca``: for a server (``hosts`` become its DNS/IP names) or a client."""
    key = _new_key()
    ca_cert = ca.certificate()
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key().public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.private_key(), hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class Bundle:
    """Where :func:`write_bundle` put things: the files for the server's side and for a client's."""

    directory: Path
    server: TlsFiles
    client: TlsFiles


def _write(path: Path, data: bytes, private: bool) -> None:
    # A key is created 0600 from the start, never readable by others even for a moment.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if private:
        os.chmod(path, 0o600)


def write_bundle(
    directory: Path,
    hosts: tuple[str, ...] = DEFAULT_SERVER_HOSTS,
    client_name: str = "faultmesh-client",
    ca: Issued | None = None,
) -> Bundle:
    """Write a CA (new unless given), a server certificate for ``hosts`` and a client certificate.

    Files: ca.crt, server.crt/.key, client.crt/.key; keys are mode 0600. The CA's key is not
    written: a bundle cannot mint more certificates later, which is what host mode wants.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca()
    server = issue(ca, hosts[0] if hosts else "faultmesh-agent", server=True, hosts=hosts)
    client = issue(ca, client_name, server=False)
    _write(directory / CA_FILE, ca.cert_pem, private=False)
    _write(directory / SERVER_CERT_FILE, server.cert_pem, private=False)
    _write(directory / SERVER_KEY_FILE, server.key_pem, private=True)
    _write(directory / CLIENT_CERT_FILE, client.cert_pem, private=False)
    _write(directory / CLIENT_KEY_FILE, client.key_pem, private=True)
    ca_path = directory / CA_FILE
    return Bundle(
        directory=directory,
        server=TlsFiles(ca_path, directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE),
        client=TlsFiles(ca_path, directory / CLIENT_CERT_FILE, directory / CLIENT_KEY_FILE),
    )
