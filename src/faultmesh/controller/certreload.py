"""The webhook server's certificate, reloaded from its files while the server runs.

cert-manager, a re-mounted Secret or the controller's own rotation (:mod:`.certrotation`) replace the
files of the serving certificate on disk; the server must present the new one without a restart. The
server keeps one :class:`ssl.SSLContext` for its whole life and each new TLS handshake takes the
certificate from it, so loading the new pair into that same context is enough. Connections already
open keep the certificate they were made with.

A changed pair is first loaded into a scratch context, and only then into the live one, from the same
bytes: OpenSSL replaces a context's certificate before it checks the key, so a key that does not match
would leave the live context unable to finish any handshake. A pair that cannot be used is logged once
and the previous certificate stays in service; the files are looked at again on every tick.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
from pathlib import Path

from cryptography import x509

log = logging.getLogger("faultmesh.controller.certreload")

#: How often the files are compared with what is being served, by default.
RELOAD_INTERVAL_S = 30.0


class CertificateReloader:
    """Keeps ``context`` serving the certificate and key that ``cert`` and ``key`` hold right now."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        # Unknown until the first check: it loads whatever the files hold, which is harmless if already served.
        self._served: tuple[bytes, bytes] | None = None
        self._reported: tuple[tuple[bytes, bytes] | None, str] | None = None

    def check(self) -> bool:
        """Serve the files' pair if it differs from the served one and can be used; True when it was loaded."""
        try:
            pair = (self.cert.read_bytes(), self.key.read_bytes())
        except OSError as error:
            self._report(None, f"cannot be read: {error}")
            return False
        if pair == self._served:
            return False
        try:
            self._load(pair)
        except (ssl.SSLError, OSError) as error:
            self._report(pair, f"do not form a usable certificate and key: {error}")
            return False
        first = self._served is None
        self._served, self._reported = pair, None
        log.info(
            "%s the serving certificate from %s: %s",
            "loaded" if first else "reloaded",
            self.cert,
            describe_certificate(pair[0]),
        )
        return True

    async def run(self, interval: float = RELOAD_INTERVAL_S) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.check()

    def _load(self, pair: tuple[bytes, bytes]) -> None:
        # load_cert_chain reads files: copies of the bytes just compared, so the files cannot change in between.
        with tempfile.TemporaryDirectory(prefix="faultmesh-serving-") as scratch:
            cert_copy, key_copy = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
            cert_copy.write_bytes(pair[0])
            key_copy.touch(mode=0o600)
            key_copy.write_bytes(pair[1])
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_copy, key_copy)
            self.context.load_cert_chain(cert_copy, key_copy)

    def _report(self, pair: tuple[bytes, bytes] | None, problem: str) -> None:
        if self._reported == (pair, problem):
            return  # said already; the next change of the files is reported afresh
        self._reported = (pair, problem)
        still = "still serving the previous certificate" if self._served is not None else "nothing loaded yet"
        log.warning(
            "the serving certificate %s and key %s %s; %s, and trying again", self.cert, self.key, problem, still
        )


def describe_certificate(cert_pem: bytes) -> str:
    """``serial 0x1f…, valid until 2026-01-01 00:00 UTC``: how the log names a serving certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "not readable PEM"
    return f"serial {cert.serial_number:#x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


async def watch_certificate(context: ssl.SSLContext, cert: Path, key: Path, interval: float) -> None:
    """Reload the pair ``cert``/``key`` into ``context`` whenever the files change, until cancelled."""
    await CertificateReloader(context, cert, key).run(interval)
