"""One POST of a batch to Scope Web's ingest API, and what its reply means for the batch.

`IngestClient.post` never raises for a network or HTTP failure; it sorts every reply into an
`Outcome` the shipper acts on:

- 2xx: ``SENT``.
- 408, 429, 503 (with the ``Retry-After`` delay, in seconds, where the server gave one), any
  other 5xx, connection errors and timeouts: ``TRANSIENT``, worth retrying.
- any other status, redirects included (never followed): ``REJECTED``, with the server's
  reason (DRF's ``detail`` where the reply is JSON).

Standard library only: this module runs inside the serving process.
"""

from __future__ import annotations

import email.utils
import enum
import http.client
import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import IO
from urllib.parse import urlsplit

_REASON_LIMIT = 4096  # bytes of an error reply read for the log
_TRANSIENT_STATUSES = frozenset({408, 429, 503})


class Outcome(enum.Enum):
    """What one POST means for its batch: delivered, refused for good, or worth a retry."""

    SENT = "sent"
    REJECTED = "rejected"
    TRANSIENT = "transient"


@dataclass(frozen=True)
class Reply:
    """How a POST ended: the reason for a failure, and ``Retry-After`` in seconds if given."""

    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None


class IngestClient:
    """POSTs request bodies to ``endpoint`` with the ingest token; see the module docstring.

    Raises ValueError at construction for an endpoint that is not an http(s) URL or a token
    that would break the Authorization header.
    """

    def __init__(self, endpoint: str, token: str, timeout: float) -> None:
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if any(c in token for c in "\r\n"):
            raise ValueError("token must not contain line breaks")
        self._endpoint = endpoint
        self._headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self._timeout = timeout
        # A redirect would turn the POST into a GET of a login page that answers 200.
        self._opener = urllib.request.build_opener(_RefuseRedirects())

    def post(self, body: bytes) -> Reply:
        """Send ``body`` once (no retry here) and classify the reply."""
        request = urllib.request.Request(  # noqa: S310  (scheme checked in __init__)
            self._endpoint, data=body, headers=self._headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read()
            return Reply(Outcome.SENT)
        except urllib.error.HTTPError as error:
            try:
                return _reply_for_error(error.code, error.headers, _read_reason(error))
            finally:
                error.close()
        except (OSError, http.client.HTTPException) as error:
            # URLError, refused connections and timeouts are all OSErrors.
            return Reply(Outcome.TRANSIENT, detail=str(error))


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns a redirect into an HTTPError (a wrong endpoint), which rejects the batch."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _reply_for_error(status: int, headers: Message, reason: str) -> Reply:
    if status in _TRANSIENT_STATUSES:
        return Reply(Outcome.TRANSIENT, reason, _retry_after(headers.get("Retry-After")))
    if status >= 500:
        return Reply(Outcome.TRANSIENT, reason)
    if 300 <= status < 400:
        reason = f"redirected to {headers.get('Location')}; is the endpoint the ingest URL?"
    return Reply(Outcome.REJECTED, f"HTTP {status}: {reason}")


def _read_reason(error: urllib.error.HTTPError) -> str:
    """The server's reason: DRF's ``detail`` where the reply is JSON, else its text."""
    try:
        text = error.read(_REASON_LIMIT).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return str(error.reason)
    try:
        reply = json.loads(text)
    except ValueError:
        return text.strip()[:500] or str(error.reason)
    if isinstance(reply, dict) and "detail" in reply:
        return str(reply["detail"])[:500]
    return text.strip()[:500]


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
