"""What a key may do, on top of what its holder's role may do.

Four scopes: ``read`` (GET, HEAD, OPTIONS), ``write`` (every other method), ``ingest`` (the
ingest API) and ``gate`` (the gate API). A personal token carries the scopes its owner picked,
``read`` and ``write`` only: ingestion and the gate API take no personal token at all. An ingest
key is the ``ingest`` scope and a gate key the ``gate`` scope, and nothing else (their
``grants_rule``). A session carries no scopes: the role alone decides.

``TokenScopes`` runs after ``DenyUndeclared``: both must let a request through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from scopeweb.accounts.access import GATE_KEY, INGEST_KEY

if TYPE_CHECKING:  # importing DRF's views here would be circular: DRF loads this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

READ = "read"
WRITE = "write"
INGEST = "ingest"
GATE = "gate"
SCOPES = (READ, WRITE, INGEST, GATE)
PERSONAL_SCOPES = (READ, WRITE)  # what a personal token may carry
SCOPE_LABELS = {
    READ: "read: GET requests",
    WRITE: "write: POST, PUT, PATCH and DELETE requests",
}
# The scope each kind of service key is (ServiceKey.grants_rule -> scope).
KEY_RULE_SCOPES = {INGEST_KEY: INGEST, GATE_KEY: GATE}


def scope_needed(method: str, view: Any) -> str:
    """The scope a request needs: the view's ``token_scope`` when it names one, the key's own
    scope on the ingest and gate APIs, else ``read`` for safe methods and ``write`` otherwise."""
    declared = getattr(view, "token_scope", None)
    if declared:
        return str(declared)
    rule = getattr(view, "access_rule", None)
    if rule in KEY_RULE_SCOPES:
        return KEY_RULE_SCOPES[rule]
    return READ if method.upper() in SAFE_METHODS else WRITE


class TokenScopes(BasePermission):
    """DRF permission: a request made with a key needs the scope its method and route ask for."""

    message = "This key lacks the scope this request needs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        scopes = getattr(request.auth, "scopes", None)
        if scopes is None:  # a session, or no key: the role rule decides alone
            return True
        needed = scope_needed(request.method or "GET", view)
        if needed in scopes:
            return True
        held = ", ".join(scopes) or "none"
        self.message = (
            f"This token lacks the {needed!r} scope that this request needs (it has: {held}). "
            f"Make a token with {needed!r} on the API tokens page."
        )
        return False
