"""The webhook server's certificate is reloaded from its files into the live TLS context, and only a usable pair is."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509

from faultmesh.controller.certreload import CertificateReloader, describe_certificate
from faultmesh.controller.certs import CERT_FILE, ServingCert, ensure_serving_cert

HOST = "127.0.0.1"


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


@asynccontextmanager
async def tls_server(serving: ServingCert) -> AsyncIterator[tuple[ssl.SSLContext, int]]:
    """A TLS server on the pair, as the webhook server holds it: one context for its whole life."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(serving.cert_file, serving.key_file)
    server = await asyncio.start_server(lambda r, w: w.close(), HOST, 0, ssl=context)
    try:
        yield context, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def served_serial(port: int, trusted: bytes) -> int:
    client = ssl.create_default_context(cadata=trusted.decode())
    _, writer = await asyncio.open_connection(HOST, port, ssl=client, server_hostname=HOST)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


def issue(directory: Path, validity: datetime.timedelta = datetime.timedelta(days=365)) -> ServingCert:
    return ensure_serving_cert(directory, (HOST,), validity=validity)


def test_a_renewed_pair_is_served_to_new_connections(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int, bool, bool]:
        first = issue(tmp_path, validity=datetime.timedelta(days=20))
        async with tls_server(first) as (context, port):
            reloader = CertificateReloader(context, first.cert_file, first.key_file)
            assert reloader.check()  # the first look loads what the files hold
            before = await served_serial(port, first.ca_bundle)
            unchanged = reloader.check()
            second = issue(tmp_path)  # 20 days left: renewed by the same CA
            reloaded = reloader.check()
            return before, await served_serial(port, second.ca_bundle), serial_of(second.cert_file), unchanged, reloaded

    before, after, renewed, unchanged, reloaded = asyncio.run(scenario())
    assert not unchanged
    assert reloaded
    assert after == renewed != before


def test_a_key_that_does_not_match_leaves_the_previous_certificate_in_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faultmesh.controller.certreload")
    first = issue(tmp_path / "live")
    other = issue(tmp_path / "other")

    async def scenario() -> tuple[int, int, int, list[bool]]:
        async with tls_server(first) as (context, port):
            reloader = CertificateReloader(context, first.cert_file, first.key_file)
            reloader.check()
            before = await served_serial(port, first.ca_bundle)
            # A new certificate beside the old key: OpenSSL would take the certificate and drop the key.
            shutil.copy(other.cert_file, first.cert_file)
            refused = [reloader.check(), reloader.check()]
            during = await served_serial(port, first.ca_bundle)
            shutil.copy(other.key_file, first.key_file)  # the pair is whole again
            refused.append(reloader.check())
            return before, during, await served_serial(port, other.ca_bundle), refused

    before, during, after, loaded = asyncio.run(scenario())
    assert during == before
    assert loaded == [False, False, True]
    assert after == serial_of(other.cert_file)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, not on every tick
    assert "do not form a usable certificate and key" in warnings[0]
    assert "KEY_VALUES_MISMATCH" in warnings[0]
    assert "still serving the previous certificate" in warnings[0]


def test_missing_or_unreadable_files_leave_the_previous_certificate_in_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = issue(tmp_path)

    async def scenario() -> tuple[int, int, list[bool]]:
        async with tls_server(first) as (context, port):
            reloader = CertificateReloader(context, first.cert_file, first.key_file)
            reloader.check()
            before = await served_serial(port, first.ca_bundle)
            key = first.key_file.read_bytes()
            first.key_file.unlink()
            missing = reloader.check()
            first.key_file.write_bytes(b"not a key")
            garbage = reloader.check()
            first.key_file.write_bytes(key)
            back = reloader.check()  # the same pair as served: nothing to do
            return before, await served_serial(port, first.ca_bundle), [missing, garbage, back]

    before, after, loaded = asyncio.run(scenario())
    assert after == before
    assert loaded == [False, False, False]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot be read" in m for m in messages)
    assert any("do not form a usable certificate and key" in m for m in messages)


def test_the_same_bytes_in_new_files_are_not_loaded_again(tmp_path: Path) -> None:
    """A re-mounted Secret swaps the files (new inodes, new times) even when the content stays."""
    serving = issue(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    reloader = CertificateReloader(context, serving.cert_file, serving.key_file)
    assert reloader.check()
    for path in (serving.cert_file, serving.key_file):
        copy = path.with_suffix(".new")
        shutil.copy(path, copy)
        os.replace(copy, path)
    assert not reloader.check()


def test_a_certificate_is_described_by_serial_and_expiry(tmp_path: Path) -> None:
    serving = issue(tmp_path)
    cert = x509.load_pem_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    assert describe_certificate(serving.cert_file.read_bytes()) == (
        f"serial {cert.serial_number:#x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )
    assert describe_certificate(b"junk") == "not readable PEM"
