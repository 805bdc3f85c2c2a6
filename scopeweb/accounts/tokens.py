"""Personal API tokens (``Authorization: Token sw_…``), and what every key's authentication
shares: reading the key from the header, and noting when a key was last used. A revoked or
expired token is refused with 401; its scopes are checked by ``scopes.TokenScopes``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from scopeweb.accounts.models import ApiToken


def header_key(request: Request, keywords: tuple[str, ...], what: str) -> str | None:
    """The key of ``Authorization: <keyword> <key>`` for one of ``keywords`` (the first is
    the one named in errors); None when the header names another scheme."""
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() not in {k.lower().encode() for k in keywords}:
        return None
    if len(parts) != 2:
        raise AuthenticationFailed(f"Authorization header must be '{keywords[0]} <{what}>'.")
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed(f"The {what} holds characters a key never has.") from None


def touch_last_used(token: Any) -> None:
    """Record that ``token`` (any key model with ``last_used_at``) was used: at most one
    write a minute per key."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        type(token).objects.filter(pk=token.pk).update(last_used_at=now)


class PersonalTokenAuthentication(BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        key = header_key(request, (self.keyword,), "key")
        if key is None:
            return None
        token = (
            ApiToken.objects.select_related("user")
            .filter(key_sha256=ApiToken.hash_key(key), revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.user.is_active:
            raise AuthenticationFailed("Unknown or revoked token.")
        if token.expired():
            assert token.expires_at is not None
            raise AuthenticationFailed(
                f"This token ({token.prefix}…) expired on {token.expires_at:%Y-%m-%d %H:%M} UTC. "
                "Make a new one on the API tokens page."
            )
        touch_last_used(token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
