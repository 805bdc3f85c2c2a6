"""Users, roles, sign-in lockouts and API tokens."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.accounts.models import ApiToken
from scopeweb.accounts.roles import Role
from scopeweb.accounts.scopes import PERSONAL_SCOPES, READ, WRITE
from scopeweb.audit.services import audit_record
from scopeweb.audit.sign_ins import forget_lockout
from scopeweb.refusals import Refused


def user_roles(user: Any) -> list[Role]:
    if user is None or not user.is_authenticated:
        return []
    names = {group.name for group in user.groups.all()}
    return [role for role in Role if role.value in names]


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def user_create(
    *,
    username: str,
    role: Role,
    email: str = "",
    password: str | None = None,
    actor: Actor,
) -> tuple[User, str]:
    """Make a user with one role; returns the user and the password (generated if not given).
    A given password must pass the validators (``AUTH_PASSWORD_VALIDATORS``): Django's
    ``ValidationError`` names each rule it breaks."""
    if password:
        validate_password(password, User(username=username, email=email))
    password = password or generate_password()
    user = User.objects.create_user(username=username, email=email, password=password)
    user.groups.set([Group.objects.get(name=role.value)])
    after = {"email": email, "role": role.value, "is_active": user.is_active}
    audit_record("user.create", actor=actor, obj=user, after=after)
    return user, password


@transaction.atomic
def user_update(*, user: User, role: Role, is_active: bool, email: str, actor: Actor) -> User:
    roles = user_roles(user)
    before: dict[str, Any] = {
        "email": user.email,
        "role": roles[0].value if roles else None,
        "is_active": user.is_active,
    }
    after = {"email": email, "role": role.value, "is_active": is_active}
    user.email = email
    user.is_active = is_active
    user.save(update_fields=["email", "is_active"])
    user.groups.set([Group.objects.get(name=role.value)])
    if before != after:
        changed = [name for name in after if before[name] != after[name]]
        audit_record(
            "user.update",
            actor=actor,
            obj=user,
            before={name: before[name] for name in changed},
            after={name: after[name] for name in changed},
        )
    return user


def admin_ensure(
    *, username: str = "admin", password: str | None = None, email: str = ""
) -> tuple[User, str] | None:
    """Make a first admin when no active admin exists; returns it and its password, else None."""
    has_admin = User.objects.filter(is_active=True, groups__name=Role.ADMIN.value).exists()
    if has_admin:
        return None
    existing = User.objects.filter(username=username).first()
    if existing is not None:
        if password:
            validate_password(password, existing)
        password = password or generate_password()
        existing.set_password(password)
        existing.is_active = True
        existing.save()
        existing.groups.add(Group.objects.get(name=Role.ADMIN.value))
        audit_record(
            "user.update",
            actor=Actor.command(),
            obj=existing,
            after={"role": "admin", "is_active": True},
        )
        return existing, password
    return user_create(
        username=username, role=Role.ADMIN, email=email, password=password, actor=Actor.command()
    )


@transaction.atomic
def user_unlock(*, user: User, actor: Actor) -> int:
    """End a sign-in lockout of ``user`` now (django-axes forgets the name's failed attempts);
    returns how many attempt records were cleared, 0 when there was nothing to clear."""
    cleared = int(axes_reset(username=user.get_username()))
    forget_lockout(user.get_username())
    if cleared:
        audit_record("user.unlock", actor=actor, obj=user, detail={"attempt_records": cleared})
    return cleared


class TokenRefused(Refused):
    status = 400


@transaction.atomic
def api_token_create(
    *,
    actor: Actor,
    name: str,
    scopes: Iterable[str] = (READ, WRITE),
    days: int | None = None,
) -> tuple[ApiToken, str]:
    """A new personal token of the actor; the key is returned once and only its hash is kept.

    ``scopes``: some of ``read`` and ``write`` (``scopeweb.accounts.scopes``); ``days``: how
    long it works, ``API_TOKEN_DAYS`` when not given, at most ``API_TOKEN_MAX_DAYS``."""
    user = actor.person
    chosen = [scope for scope in PERSONAL_SCOPES if scope in set(scopes)]
    unknown = set(scopes) - set(PERSONAL_SCOPES)
    if unknown or not chosen:
        why = f"; {', '.join(sorted(unknown))} is not a personal token's scope" if unknown else ""
        raise TokenRefused(
            f"Pick one or more of {', '.join(PERSONAL_SCOPES)}{why}.", field="scopes"
        )
    days = settings.API_TOKEN_DAYS if days is None else days
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise TokenRefused(
            f"A token works for 1 to {settings.API_TOKEN_MAX_DAYS} days, not {days}.",
            field="days",
        )
    key = ApiToken.new_key()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[:10],
        key_sha256=ApiToken.hash_key(key),
        scopes=chosen,
        expires_at=timezone.now() + timedelta(days=days),
    )
    after = {
        "name": name,
        "prefix": token.prefix,
        "owner": user.username,
        "scopes": chosen,
        "expires_at": token.expires_at,
    }
    audit_record("token.create", actor=actor, obj=token, after=after)
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            "token.revoke",
            actor=actor,
            obj=token,
            before={"revoked_at": None},
            after={"revoked_at": token.revoked_at},
        )
