"""The webhook server stops cleanly when the task serving it is cancelled (the controller shutting down)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from faultmesh.controller.certs import ensure_serving_cert
from faultmesh.controller.webhooks import WebhookSettings, serve


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _handshake(port: int, ca: bytes) -> bool:
    context = ssl.create_default_context(cadata=ca.decode())
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def test_a_cancelled_server_runs_its_shutdown_and_reports_no_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    served = ensure_serving_cert(tmp_path, ("127.0.0.1",))
    port = _free_port()

    async def scenario() -> None:
        task = asyncio.create_task(
            serve(WebhookSettings(auth=False), cert=served.cert_file, key=served.key_file, host="127.0.0.1", port=port)
        )
        while not await _handshake(port, served.ca_bundle):
            assert not task.done(), "the server stopped before it served"
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await _handshake(port, served.ca_bundle), "the port is still served after the stop"

    asyncio.run(scenario())
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err + printed.out
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
    assert "Application shutdown complete" in caplog.text + printed.err
