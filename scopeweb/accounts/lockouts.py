"""Sign-in lockouts (django-axes, configured in settings as ``AXES_*``): the page a locked-out
user name gets, and which names are locked now.

Axes counts the wrong passwords for each user name in its ``AccessAttempt`` rows; a name with
``AXES_FAILURE_LIMIT`` failures newer than the cool-off is locked until the cool-off has passed
since its last counted failure. ``services.user_unlock`` lets an admin end a lock sooner.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def locked_until(usernames: Iterable[str]) -> dict[str, datetime]:
    """The names among ``usernames`` that are locked out now, with when each lock ends."""
    now = timezone.now()
    rows = (
        AccessAttempt.objects.filter(
            username__in=list(usernames), attempt_time__gte=now - settings.AXES_COOLOFF_TIME
        )
        .values("username")
        .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    )
    return {
        row["username"]: row["last"] + settings.AXES_COOLOFF_TIME
        for row in rows
        if row["failures"] >= settings.AXES_FAILURE_LIMIT
    }


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """What a locked-out sign-in gets (``AXES_LOCKOUT_CALLABLE``): 429 and a page saying why,
    for how long, and who can lift it, whether or not the name exists."""
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    response = render(
        request,
        "registration/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response
