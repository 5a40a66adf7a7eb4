"""The probe worker: runs steady-state probes on request, from inside whatever network namespace it was started in.

The sampler (``faultmesh.host.steady``) never joins a namespace itself, since it lives in a threaded process.
It starts this script under ``nsenter --net=/proc/PID/ns/net`` instead and talks to it over stdin/stdout, one
JSON object per line. The script uses the standard library only and is started by path, so it comes up fast.

Protocol. On start the worker writes ``{"ready": true, "pid": ..., "netns": <inode>}``. Then, per request line:

- ``{"id": 1, "kind": "http", "url": "...", "method": "GET", "headers": {"K": ["v"]}, "body": null,
  "timeout": 1.0}`` → ``{"id": 1, "latency_ms": 3.2, "status": 200}``
- ``{"id": 2, "kind": "command", "argv": ["sh", "-c", "..."], "timeout": 1.0}``
  → ``{"id": 2, "latency_ms": 5.0, "exit_code": 0, "output": "..."}``

Either reply may carry ``"error": "..."`` instead (timed out, connection refused, command not found). Latency is
measured here, inside the namespace. The worker exits at the end of its input (its parent closed the pipe or
died) and on SIGTERM, killing a probe command that is still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

OUTPUT_LIMIT = 400  # characters of a command's output kept for the sample's detail
_running_commands: set[subprocess.Popen[bytes]] = set()


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    _reply({"ready": True, "pid": os.getpid(), "netns": os.stat("/proc/self/ns/net").st_ino})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            request_id = request.get("id")
            reply = handle(request)
        except Exception as error:  # a malformed request must not end the worker
            request_id, reply = None, {"error": f"bad request: {error}", "latency_ms": 0.0}
        _reply({"id": request_id, **reply})
    return 0


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Run one probe and describe its outcome."""
    timeout = float(request.get("timeout", 1.0))
    kind = request.get("kind")
    if kind == "http":
        return http_probe(request["url"], request.get("method", "GET"), request.get("headers") or {},
                          request.get("body"), timeout)
    if kind == "command":
        return command_probe([str(part) for part in request["argv"]], timeout)
    return {"error": f"unknown probe kind {kind!r}", "latency_ms": 0.0}


def http_probe(
    url: str, method: str, headers: dict[str, list[str]], body: str | None, timeout: float
) -> dict[str, Any]:
    """One HTTP request with a deadline on the whole exchange (connect, send, status line, body)."""
    # No proxies: a probe from inside a namespace must go where its URL says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method)
    for name, values in headers.items():
        for value in values:
            request.add_header(name, value)
    outcome: dict[str, Any] = {}

    def exchange() -> None:
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read()
                outcome["status"] = response.status
        except urllib.error.HTTPError as error:  # 4xx and 5xx: a response all the same
            outcome["status"] = error.code
        except urllib.error.URLError as error:
            outcome["error"] = _reason(error.reason, timeout)
        except Exception as error:
            outcome["error"] = _reason(error, timeout)
        outcome["latency_ms"] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    # A thread bounds the whole exchange: socket timeouts alone apply per read, not to the request.
    thread = threading.Thread(target=exchange, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or not outcome:
        return {"error": f"timed out after {timeout:g} s", "latency_ms": (time.perf_counter() - started) * 1000}
    return dict(outcome)


def command_probe(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run a command in its own process group; exit code 0 passes. On timeout the whole group is killed."""
    started = time.perf_counter()
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, process_group=0)
    except OSError as error:
        return {"error": f"cannot run {argv[0]!r}: {error.strerror or error}", "latency_ms": 0.0}
    _running_commands.add(process)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        return {"error": f"timed out after {timeout:g} s", "latency_ms": (time.perf_counter() - started) * 1000}
    finally:
        _running_commands.discard(process)
    text = output.decode(errors="replace").strip()
    return {"exit_code": process.returncode, "output": text[-OUTPUT_LIMIT:],
            "latency_ms": (time.perf_counter() - started) * 1000}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _on_sigterm(signum: int, frame: object) -> None:
    for process in list(_running_commands):
        _kill_group(process)
    os._exit(128 + signum)


def _reason(reason: object, timeout: float) -> str:
    # A socket timeout and the overall deadline are the same event for the sample: word them alike.
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
