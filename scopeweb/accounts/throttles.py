"""How often each caller may call the API: one budget per caller, in the shared cache.

The caller is, in this order: an ingest key (scope ``ingest``), a gate key (``gate``), a user
(``user``: their session and all their personal tokens share one budget), or an anonymous
address (``anon``). Rates are ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, set from the
environment (``SCOPEWEB_API_RATE`` and the others in ``RATE_VARIABLES``). Over it, the API
answers 429 with ``Retry-After`` and a body naming the limit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rest_framework.exceptions import APIException, Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from scopeweb.accounts.access import GATE_KEY, INGEST_KEY

if TYPE_CHECKING:  # importing DRF's views here would be circular: DRF loads this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

RATE_VARIABLES = {
    "user": "SCOPEWEB_API_RATE",
    "anon": "SCOPEWEB_API_ANON_RATE",
    "ingest": "SCOPEWEB_INGEST_RATE",
    "gate": "SCOPEWEB_GATE_RATE",
}
_WHO = {
    "user": "each user (session and personal tokens together)",
    "anon": "each address without a key",
    "ingest": "each ingest key",
    "gate": "each gate key",
}
_KEY_SCOPES = {INGEST_KEY: "ingest", GATE_KEY: "gate"}


class RateLimited(Throttled):
    """429 whose body names the limit: ``{"detail", "scope", "limit"}``."""

    def __init__(self, *, scope: str, rate: str, wait: float | None) -> None:
        count, _, period = rate.partition("/")
        seconds = max(1, math.ceil(wait)) if wait is not None else None
        detail = (
            f"Too many requests: {_WHO[scope]} may make {count} per {_period_name(period)} "
            f"({RATE_VARIABLES[scope]}={rate})."
        )
        if seconds is not None:
            detail += f" Try again in {seconds} s."
        # Throttled would append its own sentence to a string; the body here is an object.
        APIException.__init__(self, {"detail": detail, "scope": scope, "limit": rate})
        self.wait = seconds


def _period_name(period: str) -> str:
    return {"s": "second", "m": "minute", "h": "hour", "d": "day"}[period[:1]]


class CallerRateThrottle(SimpleRateThrottle):
    """DRF's rate throttle with its scope and key chosen per request (see the module)."""

    def __init__(self) -> None:  # the rate depends on the caller: set in allow_request
        self.ident = ""

    def caller(self, request: Request) -> tuple[str, str]:
        """(scope, who) for the request."""
        rule = getattr(request.auth, "grants_rule", None)
        if rule in _KEY_SCOPES:
            scope = _KEY_SCOPES[rule]
            return scope, f"{scope}-key:{request.auth.pk}"
        user = request.user
        if user is not None and user.is_authenticated:
            return "user", f"user:{user.pk}"
        return "anon", f"addr:{self.get_ident(request)}"

    def get_rate(self) -> str:
        # Read at each request, not at import: tests and a changed setting see the new rates.
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return str(rates[str(self.scope)])

    def allow_request(self, request: Request, view: APIView) -> bool:
        self.scope, self.ident = self.caller(request)
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if super().allow_request(request, view):
            return True
        raise RateLimited(scope=self.scope, rate=self.rate, wait=self.wait())

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.ident}
