"""Sign-ins, failed sign-ins, lockouts and sign-outs, recorded from Django's auth signals and
django-axes' ``user_locked_out``.

Django sends ``user_logged_in`` after setting ``request.user`` and ``user_logged_out`` before
clearing it, so the request names who signed in or out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.audit.sign_ins import sign_in_failed, sign_in_locked_out


def record_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record("auth.login", actor=replace(Actor.of(request), user=user), obj=user)


def record_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    """The attempted user name (never the password) and the caller's address: the first
    failure for a name on its own, the rest counted (``scopeweb.audit.sign_ins``)."""
    sign_in_failed(
        username=str(credentials.get("username", "")),
        actor=Actor.of(request) if request is not None else Actor.system(),
    )


def record_lockout(
    sender: Any, request: Any = None, username: str | None = None, **kwargs: Any
) -> None:
    """django-axes locked a user name out (``user_locked_out``): recorded once per lock."""
    sign_in_locked_out(
        username=str(username or ""),
        actor=Actor.of(request) if request is not None else Actor.system(),
    )


def record_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return  # signing out without a session: nobody to record
    audit_record("auth.logout", actor=replace(Actor.of(request), user=user), obj=user)
