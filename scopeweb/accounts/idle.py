"""Idle sessions: a session ends ``SESSION_COOKIE_AGE`` after its last request.

Django's ``SESSION_SAVE_EVERY_REQUEST`` would do it with one database write per request, which
a reviewer's page (and each fragment it loads) pays for. Here a request saves the session only
when the last save is ``REFRESH_SECONDS`` old or more, so the idle timeout holds to within that
margin at a write a minute per active reviewer.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

REFRESH_SECONDS = 60
_SEEN = "_scopeweb_seen"


class IdleSessionMiddleware:
    """Placed after ``SessionMiddleware``, which saves a modified session on the way out."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is None or session.is_empty():
            return response
        now = int(timezone.now().timestamp())  # the sessions' own clock
        if session.modified or now - int(session.get(_SEEN, 0)) >= REFRESH_SECONDS:
            session[_SEEN] = now  # modified: saved with a fresh expiry
        return response
