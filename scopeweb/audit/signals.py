"""Sign-ins, failed sign-ins and sign-outs, recorded from Django's auth signals.

Django sends ``user_logged_in`` after setting ``request.user`` and ``user_logged_out`` before
clearing it, so the request names who signed in or out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib.auth import get_user_model

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record


def record_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record("auth.login", actor=replace(Actor.of(request), user=user), obj=user)


def record_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    """The attempted user name (never the password) and the caller's address."""
    username = str(credentials.get("username", ""))[:150]
    known = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
    audit_record(
        "auth.login_failed",
        actor=Actor.of(request) if request is not None else Actor.system(),
        object_type="user" if known is not None else "",
        object_id=known if known is not None else "",
        object_repr=username,
        detail={"username": username},
    )


def record_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return  # signing out without a session: nobody to record
    audit_record("auth.logout", actor=replace(Actor.of(request), user=user), obj=user)
