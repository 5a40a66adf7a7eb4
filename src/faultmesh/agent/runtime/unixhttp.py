"""HTTP/1.1 over a unix socket: how docker's Engine API and CRI-O's info endpoint are spoken."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .base import ContainerRuntime, RuntimeUnavailableError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def message(self) -> str:
        """The error text: docker's ``{"message": ...}`` or a plain-text body (CRI-O)."""
        text = self.body.decode(errors="replace").strip()
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            return str(decoded["message"])
        return text


class UnixHTTPClient:
    """One request per connection (these daemons are local; keeping it simple keeps it thread-safe)."""

    def __init__(self, socket_path: Path, what: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.what = what
        self.timeout = timeout

    def request(self, method: str, path: str, host: str = "localhost") -> Response:
        if not self.socket_path.exists():
            raise RuntimeUnavailableError(f"{self.what} socket {self.socket_path} does not exist")
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request(method, path, headers={"Host": host, "Accept": "application/json"})
            reply = connection.getresponse()
            return Response(reply.status, reply.read())
        except (ConnectionRefusedError, FileNotFoundError):
            raise RuntimeUnavailableError(
                f"nothing listens on {self.what} socket {self.socket_path}"
            ) from None
        except TimeoutError:
            raise RuntimeUnavailableError(
                f"{self.what} at {self.socket_path} did not answer {method} {path} within {self.timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            raise RuntimeUnavailableError(
                f"{self.what} at {self.socket_path}: {method} {path} failed: {error}"
            ) from None
        finally:
            connection.close()


class UnixHTTPRuntime(ContainerRuntime):
    """A runtime whose daemon answers HTTP on a unix socket (docker, CRI-O)."""

    #: How messages name the daemon.
    daemon: ClassVar[str]
    default_socket: ClassVar[Path]

    def __init__(self, socket: Path | None = None, timeout: float = 10.0) -> None:
        self.socket = self.default_socket if socket is None else socket
        self._http = UnixHTTPClient(self.socket, self.daemon, timeout)
