"""The HTTP side of ``scopeweb-gate``: Scope Web's gate API (``/api/gates/v1/``) over urllib.

Every failure becomes a ``GateError`` whose message names the problem (the URL that could not
be reached, the HTTP status with the server's ``detail`` and ``field``), so the command prints
one line instead of a traceback. ``GateError.transient`` marks what is worth retrying:
connection errors, timeouts and 5xx replies. ``get_json_retrying`` retries those, with the
delays of ``RETRY_DELAYS_S``; a POST is never retried (it could start a second run).

Standard library only: CI runners install this without Scope Web.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

API_PATH = "/api/gates/v1"
USER_AGENT = "scopeweb-gate/0.1.0"
REQUEST_TIMEOUT_S = 60.0
RETRY_DELAYS_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # between tries of a GET
_DETAIL_LIMIT = 500  # characters of a server's error reply shown


class GateError(Exception):
    """A failure the command reports in one line and exits 2 for; ``transient`` when a retry
    might succeed (the server could not be reached, timed out or answered 5xx)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def api_base(server: str) -> str:
    """``server`` (Scope Web's address, with or without the API path) as the API's base URL.
    Raises ``GateError`` unless it is an http(s) URL."""
    parts = urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GateError(
            f"--server must be an http(s) URL such as https://scope.example.org, not {server!r}"
        )
    base = server.strip().rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


@dataclass(frozen=True)
class Client:
    """Requests to one Scope Web's gate API; ``token`` is the gate key (``swg_…``), or None
    for the public certificate."""

    base: str  # from api_base
    token: str | None = None
    timeout: float = REQUEST_TIMEOUT_S

    def get_json(self, path: str) -> dict[str, Any]:
        return _json_object(self._send("GET", path), self.url(path))

    def get_text(self, path: str) -> str:
        data = self._send("GET", path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise GateError(f"{self.url(path)} sent a reply that is not UTF-8 text") from None

    def get_json_retrying(self, path: str) -> dict[str, Any]:
        """``get_json``, tried again after each transient failure while ``RETRY_DELAYS_S``
        has delays left; then the last failure is raised."""
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return self.get_json(path)
            except GateError as exc:
                if not exc.transient or delay is None:
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")  # the loop's last pass returns or raises

    def post_json(self, path: str, fields: dict[str, str]) -> dict[str, Any]:
        body = json.dumps(fields).encode("utf-8")
        data = self._send("POST", path, body, "application/json")
        return _json_object(data, self.url(path))

    def post_multipart(
        self, path: str, fields: dict[str, str], files: dict[str, Path]
    ) -> dict[str, Any]:
        """A multipart/form-data POST of ``fields`` and the files (part name: path)."""
        body, content_type = multipart_body(fields, files)
        return _json_object(self._send("POST", path, body, content_type), self.url(path))

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def _send(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> bytes:
        url = self.url(path)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        # api_base let through http(s) URLs alone.
        request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                data: bytes = reply.read()
                return data
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, url) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
            raise GateError(f"cannot reach {url}: {text}", transient=True) from None
        except (TimeoutError, OSError) as exc:  # a read that timed out, a connection reset
            raise GateError(
                f"cannot reach {url}: {exc or type(exc).__name__}", transient=True
            ) from None


def multipart_body(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """The body and Content-Type of a multipart/form-data request (RFC 7578). Raises
    ``GateError`` for a file that cannot be read, naming its part (``--prompts``)."""
    boundary = f"scopeweb-gate-{secrets.token_hex(16)}"
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'
        parts.append(head.encode("utf-8") + value.encode("utf-8") + b"\r\n")
    for name, path in files.items():
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise GateError(f"--{name} {path}: no such file") from None
        except OSError as exc:
            raise GateError(f"--{name} {path}: cannot be read: {exc.strerror or exc}") from None
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
            f'filename="{_quoted(path.name)}"\r\nContent-Type: {kind}\r\n\r\n'
        )
        parts.append(head.encode("utf-8") + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    """``text`` inside a quoted header parameter, as browsers write it (HTML's form rules)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def _http_error(exc: urllib.error.HTTPError, url: str) -> GateError:
    """``server said 400 on field checkpoint: …`` from the API's JSON error body."""
    try:
        raw = exc.read()
    except OSError:
        raw = b""
    detail, field = "", ""
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            detail, field = str(data.get("detail", "")), str(data.get("field") or "")
            if not detail:  # DRF's field errors: {"name": ["message"]}
                detail = "; ".join(f"{k}: {v}" for k, v in data.items())
    except ValueError:
        detail = raw.decode("utf-8", "replace").strip()
    detail = " ".join(detail.split())[:_DETAIL_LIMIT] or exc.reason or "no reason given"
    where = f" on field {field}" if field else ""
    hint = ""
    if exc.code == 401:
        hint = " (is SCOPEWEB_GATE_TOKEN a valid, unrevoked gate key?)"
    elif exc.code == 403:
        hint = " (a gate key runs only its own gate)"
    return GateError(
        f"server said {exc.code}{where}: {detail}{hint} [{url}]", transient=exc.code >= 500
    )


def _json_object(data: bytes, url: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise GateError(f"{url} did not answer with JSON: {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise GateError(f"{url} did not answer with a JSON object")
    return value
