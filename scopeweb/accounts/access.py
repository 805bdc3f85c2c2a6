"""Who may reach each route.

Every view declares an access rule: ``PUBLIC``, ``SIGNED_IN`` (any signed-in user) or the name of
a capability from ``scopeweb.accounts.roles.CAPABILITIES``. Function views use ``@access(rule)``;
DRF views set ``access_rule`` and get checked by ``DenyUndeclared``, which refuses any view that
forgot to declare one. A test walks the URL resolver and fails on an undeclared route.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework.permissions import BasePermission

if TYPE_CHECKING:  # importing DRF's views here would be circular: DRF loads this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

from scopeweb.accounts.roles import CAPABILITIES, roles_with

PUBLIC = "public"
SIGNED_IN = "signed_in"
# Keys, not people: an ingest key of a manifest (its authentication marks ``request.auth``
# with ``grants_rule``), and the scrape token of /metrics (``SCOPEWEB_METRICS_TOKEN``).
INGEST_KEY = "ingest_key"
GATE_KEY = "gate_key"  # a gate's key: its runs over the API (``scopeweb-gate``), nothing else
METRICS_TOKEN = "metrics_token"  # noqa: S105 (a rule's name, not a secret)
KEY_RULES = (INGEST_KEY, GATE_KEY, METRICS_TOKEN)


def _check_rule(rule: str) -> None:
    if rule not in (PUBLIC, SIGNED_IN, *KEY_RULES) and rule not in CAPABILITIES:
        raise ValueError(f"Unknown access rule {rule!r}")


def user_may(user: Any, rule: str) -> bool:
    if rule == PUBLIC:
        return True
    if rule in KEY_RULES:  # no user reaches these; only their key does
        return False
    if not (user and user.is_authenticated and user.is_active):
        return False
    if rule == SIGNED_IN:
        return True
    return bool(user.has_perm(f"accounts.{rule}"))


def access(
    rule: str,
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Declare and enforce who reaches a function view."""
    _check_rule(rule)

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if rule == METRICS_TOKEN:
                refusal = _metrics_refusal(request)
                return refusal if refusal is not None else view(request, *args, **kwargs)
            if rule != PUBLIC and not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_may(request.user, rule):
                raise PermissionDenied(describe(rule))
            return view(request, *args, **kwargs)

        wrapped.access_rule = rule  # type: ignore[attr-defined]
        return wrapped

    return decorate


def _metrics_refusal(request: HttpRequest) -> HttpResponseBase | None:
    """404 while no scrape token is set, 401 without the right ``Bearer`` token."""
    expected = getattr(settings, "METRICS_TOKEN", "")
    if not expected:
        return HttpResponse("Metrics are off: set SCOPEWEB_METRICS_TOKEN.\n", status=404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        response = HttpResponse(
            "Send Authorization: Bearer <SCOPEWEB_METRICS_TOKEN>.\n", status=401
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    return None


def describe(rule: str) -> str:
    if rule == PUBLIC:
        return "Anyone."
    if rule == INGEST_KEY:
        return "An ingest key of the manifest (it reads nothing)."
    if rule == GATE_KEY:
        return "A gate's key (its own gate's runs only)."
    if rule == METRICS_TOKEN:
        return "The metrics scrape token."
    if rule == SIGNED_IN:
        return "Any signed-in user."
    roles = ", ".join(sorted(role.value for role in roles_with(rule)))
    return f"{CAPABILITIES[rule][0]}: {roles}."


def rule_of(callback: Any) -> str | None:
    """The access rule a resolved URL callback declares, if any."""
    rule = getattr(callback, "access_rule", None)
    if rule is None and hasattr(callback, "cls"):
        rule = getattr(callback.cls, "access_rule", None)
    if rule is None and hasattr(callback, "view_class"):
        rule = getattr(callback.view_class, "access_rule", None)
    return rule


class DenyUndeclared(BasePermission):
    """DRF permission: the view's ``access_rule`` decides; a view without one is refused."""

    message = "You do not have a role that may use this endpoint."

    def has_permission(self, request: Request, view: APIView) -> bool:
        rule = getattr(view, "access_rule", None)
        if rule is None:
            return False
        _check_rule(rule)
        if rule in (INGEST_KEY, GATE_KEY):
            return bool(getattr(request.auth, "grants_rule", None) == rule)
        if user_may(request.user, rule):
            return True
        self.message = f"Your role may not use this endpoint. Allowed: {describe(rule)}"
        return False
