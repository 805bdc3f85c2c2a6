from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

from scopeweb.accounts.roles import CAPABILITIES

TOKEN_PREFIX = "sw_"  # noqa: S105 (a marker, not a secret)


class RoleCapability(models.Model):
    """Holds the role permissions (``Meta.permissions``); it has no rows of its own."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [(name, text) for name, (text, _) in CAPABILITIES.items()]

    def __str__(self) -> str:
        return "role capabilities"


class ApiToken(models.Model):
    """A personal API token. Only its sha256 is stored; the key is shown once, when made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to tell tokens apart.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def new_key() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()
