from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from scopeweb.accounts.roles import CAPABILITIES
from scopeweb.accounts.scopes import KEY_RULE_SCOPES, READ, WRITE

TOKEN_PREFIX = "sw_"  # noqa: S105 (a marker, not a secret)


def sha256_of_key(key: str) -> str:
    """What a key's model stores of it: the key is shown once and never kept."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_secret_key(prefix: str) -> str:
    """A new key: ``prefix`` (it says which kind of key it is) and 256 random bits."""
    return prefix + secrets.token_urlsafe(32)


class ServiceKey(models.Model):
    """A key that a service, not a person, holds (an ingest key, a gate key): bound to one
    object by the concrete model, reaching only what ``grants_rule`` names. Only its sha256 is
    stored; the key is shown once."""

    key_prefix = ""  # what every key of the kind starts with
    grants_rule = ""  # what DenyUndeclared lets the key reach (scopeweb.accounts.access)

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_sha256 = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def new_key(cls) -> str:
        return new_secret_key(cls.key_prefix)

    hash_key = staticmethod(sha256_of_key)

    @property
    def scopes(self) -> tuple[str, ...]:
        """A service key is one scope (``scopeweb.accounts.scopes``): the one its rule names."""
        return (KEY_RULE_SCOPES[self.grants_rule],)


class RoleCapability(models.Model):
    """Holds the role permissions (``Meta.permissions``); it has no rows of its own."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [(name, text) for name, (text, _) in CAPABILITIES.items()]

    def __str__(self) -> str:
        return "role capabilities"


def legacy_token_scopes() -> list[str]:
    """What a token made before scopes existed may do: everything its owner's role may."""
    return [READ, WRITE]


class ApiToken(models.Model):
    """A personal API token. Only its sha256 is stored; the key is shown once, when made.

    ``scopes`` (``read``, ``write``) narrow what the owner's role allows; ``expires_at`` ends
    it. Tokens made before either existed have both scopes and no expiry (the list says so).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to tell tokens apart.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(
        default=legacy_token_scopes, help_text="What it may do: read, write (scopes.py)."
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When it stops working; blank: never (older tokens)."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def new_key() -> str:
        return new_secret_key(TOKEN_PREFIX)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    hash_key = staticmethod(sha256_of_key)
