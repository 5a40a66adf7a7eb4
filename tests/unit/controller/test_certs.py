"""Webhook certificates: made once, reused while good, renewed near expiry, reloaded by the server."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from faultmesh.agent.rpc.tls import make_ca
from faultmesh.controller.certs import (
    CA_BUNDLE_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    ensure_serving_cert,
    rotation_reason,
    service_hosts,
)
from faultmesh.controller.webhooks import watch_certificate

HOSTS = service_hosts("faultmesh-webhook", "chaos-mesh")
NOW = datetime.datetime.now(datetime.UTC)


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_first_call_makes_a_ca_and_a_certificate_for_the_hosts(tmp_path: Path) -> None:
    serving = ensure_serving_cert(tmp_path, (*HOSTS, "127.0.0.1"))
    assert serving.renewed == "CA and certificate (no CA yet)"
    cert, ca = certificate(serving.cert_file), certificate(tmp_path / CA_CERT_FILE)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == list(HOSTS)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert serving.ca_bundle == (tmp_path / CA_BUNDLE_FILE).read_bytes() == (tmp_path / CA_CERT_FILE).read_bytes()
    for private in (CA_KEY_FILE, KEY_FILE):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600
    assert ssl.create_default_context(cadata=serving.ca_bundle.decode()).cert_store_stats()["x509_ca"] == 1


def test_good_files_are_reused(tmp_path: Path) -> None:
    first = ensure_serving_cert(tmp_path, HOSTS)
    before = {name: (tmp_path / name).read_bytes() for name in (CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE)}
    again = ensure_serving_cert(tmp_path, HOSTS)
    assert not again.rotated
    assert again.ca_bundle == first.ca_bundle
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_certificate_near_expiry_is_renewed_by_the_same_ca(tmp_path: Path) -> None:
    ensure_serving_cert(tmp_path, HOSTS, validity=datetime.timedelta(days=20))
    old_serial = certificate(tmp_path / CERT_FILE).serial_number
    renewed = ensure_serving_cert(tmp_path, HOSTS)  # 20 days left < the 30-day margin
    assert renewed.renewed.startswith("certificate (the certificate expires at ")
    new = certificate(tmp_path / CERT_FILE)
    assert new.serial_number != old_serial
    new.verify_directly_issued_by(certificate(tmp_path / CA_CERT_FILE))
    assert renewed.ca_bundle.count(b"BEGIN CERTIFICATE") == 1  # same CA: the bundle need not change


def test_a_new_host_renews_the_certificate(tmp_path: Path) -> None:
    ensure_serving_cert(tmp_path, HOSTS)
    renewed = ensure_serving_cert(tmp_path, (*HOSTS, "10.0.0.7"))
    assert renewed.renewed == "certificate (the certificate does not name 10.0.0.7)"


def test_a_ca_near_expiry_is_replaced_and_the_bundle_keeps_the_old_one(tmp_path: Path) -> None:
    ensure_serving_cert(tmp_path, HOSTS)
    old_ca = certificate(tmp_path / CA_CERT_FILE)
    later = old_ca.not_valid_after_utc - datetime.timedelta(days=100)
    rotated = ensure_serving_cert(tmp_path, HOSTS, now=later)
    assert rotated.renewed.startswith("CA and certificate (the CA expires at ")
    new_ca = certificate(tmp_path / CA_CERT_FILE)
    certificate(tmp_path / CERT_FILE).verify_directly_issued_by(new_ca)
    bundle = x509.load_pem_x509_certificates(rotated.ca_bundle)
    assert [c.serial_number for c in bundle] == [new_ca.serial_number, old_ca.serial_number]


def test_an_expired_ca_leaves_the_bundle(tmp_path: Path) -> None:
    serving = ensure_serving_cert(tmp_path, HOSTS)
    expired = make_ca("old", validity=datetime.timedelta(minutes=-1))
    (tmp_path / CA_BUNDLE_FILE).write_bytes(serving.ca_bundle + expired.cert_pem)
    again = ensure_serving_cert(tmp_path, HOSTS)
    assert again.ca_bundle == serving.ca_bundle


def test_files_that_do_not_belong_together_are_replaced(tmp_path: Path) -> None:
    ensure_serving_cert(tmp_path, HOSTS)
    other = tmp_path / "other"
    ensure_serving_cert(other, HOSTS)
    (tmp_path / KEY_FILE).write_bytes((other / KEY_FILE).read_bytes())
    assert ensure_serving_cert(tmp_path, HOSTS).renewed == "certificate (the key does not belong to the certificate)"
    (tmp_path / CERT_FILE).write_bytes((other / CERT_FILE).read_bytes())
    unsigned = ensure_serving_cert(tmp_path, HOSTS)
    assert unsigned.renewed == "certificate (the certificate is not signed by the current CA)"
    (tmp_path / CA_KEY_FILE).write_bytes(b"garbage")
    assert ensure_serving_cert(tmp_path, HOSTS).renewed == "CA and certificate (no CA yet)"


def test_a_ca_whose_key_is_gone_is_replaced_but_stays_trusted(tmp_path: Path) -> None:
    """As with a Secret made by an installer: its CA may have signed what other servers still present."""
    ensure_serving_cert(tmp_path, HOSTS)
    old_ca = certificate(tmp_path / CA_CERT_FILE)
    (tmp_path / CA_KEY_FILE).unlink()
    (tmp_path / CA_BUNDLE_FILE).unlink()
    renewed = ensure_serving_cert(tmp_path, HOSTS)
    assert renewed.renewed == "CA and certificate (no CA yet)"
    bundle = x509.load_pem_x509_certificates(renewed.ca_bundle)
    assert [c.serial_number for c in bundle] == [certificate(tmp_path / CA_CERT_FILE).serial_number,
                                                 old_ca.serial_number]


def test_host_names_too_long_for_the_subject_are_still_named(tmp_path: Path) -> None:
    hosts = service_hosts("faultmesh-controller", "a-namespace-name-of-fifty-characters-for-the-test")
    serving = ensure_serving_cert(tmp_path, hosts)
    cert = certificate(serving.cert_file)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == list(hosts)
    common_name = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert common_name == "faultmesh-controller"  # the first name that fits in 64 characters


def test_rotation_reasons(tmp_path: Path) -> None:
    ensure_serving_cert(tmp_path, HOSTS)
    cert, ca = (tmp_path / CERT_FILE).read_bytes(), (tmp_path / CA_CERT_FILE).read_bytes()
    assert rotation_reason(cert, ca, HOSTS) is None
    early = rotation_reason(cert, ca, HOSTS, now=NOW - datetime.timedelta(days=1))
    assert early is not None and early.startswith("the certificate is not valid before")
    late = rotation_reason(cert, ca, HOSTS, now=NOW + datetime.timedelta(days=340))
    assert late is not None and late.startswith("the certificate expires at")
    assert rotation_reason(b"junk", ca, HOSTS) == "the certificate or the CA is not readable PEM"


def test_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one host"):
        ensure_serving_cert(tmp_path, ())
    with pytest.raises(ValueError, match="outlive"):
        ensure_serving_cert(tmp_path, HOSTS, ca_validity=datetime.timedelta(days=100))


async def served_serial(port: int, ca_bundle: bytes) -> int:
    client = ssl.create_default_context(cadata=ca_bundle.decode())
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def reload_scenario(directory: Path) -> tuple[int, int, int]:
    first = ensure_serving_cert(directory, ("127.0.0.1",), validity=datetime.timedelta(days=20))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(first.cert_file, first.key_file)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    watcher = asyncio.create_task(watch_certificate(context, first.cert_file, first.key_file, 0.05))
    try:
        before = await served_serial(port, first.ca_bundle)
        second = ensure_serving_cert(directory, ("127.0.0.1",))  # 20 days left: renewed
        expected = certificate(second.cert_file).serial_number
        for _ in range(100):
            await asyncio.sleep(0.05)
            after = await served_serial(port, second.ca_bundle)
            if after == expected:
                break
        return before, after, expected
    finally:
        watcher.cancel()
        server.close()
        await server.wait_closed()


def test_the_server_reloads_a_renewed_certificate(tmp_path: Path) -> None:
    before, after, expected = asyncio.run(reload_scenario(tmp_path))
    assert before != expected
    assert after == expected
