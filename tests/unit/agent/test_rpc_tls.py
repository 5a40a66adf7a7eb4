"""The certificate helper and the TLS options: what the agent trusts, and how it names mistakes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from faultmesh.agent.rpc.tls import TlsConfigError, TlsFiles, issue, make_ca, write_bundle


def test_bundle_is_signed_by_its_ca_and_keys_are_private(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "certs", hosts=("localhost", "127.0.0.1"))
    ca = x509.load_pem_x509_certificate(bundle.server.ca.read_bytes())
    sides = ((bundle.server, ExtendedKeyUsageOID.SERVER_AUTH), (bundle.client, ExtendedKeyUsageOID.CLIENT_AUTH))
    for files, usage in sides:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate(bundle.server.cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert not (tmp_path / "certs" / "ca.key").exists()


def test_a_certificate_from_another_ca_does_not_verify() -> None:
    ours, theirs = make_ca(), make_ca()
    leaf = issue(theirs, "intruder", server=False).certificate()
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises ValueError or InvalidSignature by version
        leaf.verify_directly_issued_by(ours.certificate())


def test_options_are_all_or_nothing(tmp_path: Path) -> None:
    assert TlsFiles.from_options(None, None, None) is None
    with pytest.raises(TlsConfigError, match="--tls-cert, --tls-key missing"):
        TlsFiles.from_options(tmp_path / "ca.crt", None, None)


def test_unreadable_or_non_pem_files_are_named(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path)
    missing = TlsFiles(tmp_path / "nope.crt", bundle.server.cert, bundle.server.key)
    with pytest.raises(TlsConfigError, match=r"cannot read the TLS CA .*nope\.crt"):
        missing.read()
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(TlsConfigError, match=r"the TLS key .*garbage\.key is not PEM"):
        TlsFiles(bundle.server.ca, bundle.server.cert, garbage).read()
