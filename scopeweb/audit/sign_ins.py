"""Failed sign-ins, recorded in aggregate: a flood of wrong passwords cannot flood the audit log
(whose appends serialise on its hash chain).

For each attempted user name, the first failure opens a window of
``LOGIN_FAILURE_AUDIT_WINDOW_SECONDS`` and is recorded as ``auth.login_failed``, like any single
failure. The failures after it are only counted, in the shared cache. When the window closes, one
``auth.login_failed_summary`` event says how many failed, for which name, from which addresses,
between when and when; it is written by a task queued when the window opened, or by the next
failure for the name after the window's end, whichever comes first (and never both). A window
whose only failure was its first writes no summary.

A lockout (django-axes: ``AXES_FAILURE_LIMIT`` failures for one name) is recorded once per lock as
``auth.lockout``; an admin's unlock (``forget_lockout``) lets the next lock be recorded again.

The counts are exact on Redis; on the file cache, two processes failing at the same instant may
each miss the other's increment.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import audit_record

log = logging.getLogger(__name__)
CLOSE_TASK = "scopeweb.audit.tasks.audit_sign_in_window_close_task"
MAX_SOURCES = 10  # addresses named in a summary; more are counted, not listed
USERNAME_MAX = 150


def _window() -> timedelta:
    return timedelta(seconds=settings.LOGIN_FAILURE_AUDIT_WINDOW_SECONDS)


def _keep_seconds() -> int:
    """How long a window's counts outlive it: long enough for a late close to read them."""
    return settings.LOGIN_FAILURE_AUDIT_WINDOW_SECONDS + 3600


def _key(username: str, *parts: str) -> str:
    # A digest: user names may hold characters some cache backends refuse in keys.
    digest = hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]
    return ":".join(("signin", digest, *parts))


def _user_object(username: str) -> dict[str, Any]:
    known = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
    return {
        "object_type": "user" if known is not None else "",
        "object_id": known if known is not None else "",
        "object_repr": username,
    }


def sign_in_failed(*, username: str, actor: Actor) -> AuditEvent | None:
    """Count one failed sign-in for ``username`` (never the password); the event when this
    failure is recorded on its own (the first of a window), else None."""
    username = username[:USERNAME_MAX]
    now = timezone.now()
    opened = cache.get(_key(username, "open"))
    if opened is not None and now >= datetime.fromisoformat(opened) + _window():
        sign_in_window_close(username=username, opened=opened)
        opened = None
    if opened is None:
        stamp = now.isoformat()
        if cache.add(_key(username, "open"), stamp, _keep_seconds()):
            return _window_open(username, stamp, actor)
        opened = cache.get(_key(username, "open")) or stamp  # another process just opened one
    _count(username, opened, now, actor.source)
    return None


def _window_open(username: str, stamp: str, actor: Actor) -> AuditEvent:
    cache.set_many(
        {
            _key(username, stamp, "count"): 1,
            _key(username, stamp, "last"): stamp,
            _key(username, stamp, "sources"): [actor.source] if actor.source else [],
        },
        _keep_seconds(),
    )
    event = audit_record(
        "auth.login_failed", actor=actor, detail={"username": username}, **_user_object(username)
    )
    transaction.on_commit(lambda: _queue_close(username, stamp))
    return event


def _queue_close(username: str, stamp: str) -> None:
    try:
        current_app.send_task(
            CLOSE_TASK,
            args=[username, stamp],
            countdown=settings.LOGIN_FAILURE_AUDIT_WINDOW_SECONDS + 5,
        )
    except Exception:  # the broker is down: the name's next failure closes the window
        log.exception("could not queue the close of a sign-in failure window")


def _count(username: str, opened: str, now: datetime, source: str) -> None:
    count_key = _key(username, opened, "count")
    try:
        cache.incr(count_key)
    except ValueError:  # evicted, or closed a moment ago: count from here
        cache.set(count_key, 1, _keep_seconds())
    cache.set(_key(username, opened, "last"), now.isoformat(), _keep_seconds())
    sources_key = _key(username, opened, "sources")
    sources: list[str] = cache.get(sources_key) or []
    if source and source not in sources and len(sources) < MAX_SOURCES:
        cache.set(sources_key, [*sources, source], _keep_seconds())


def sign_in_window_close(*, username: str, opened: str) -> AuditEvent | None:
    """Close the window ``opened`` (an ISO time) for ``username``: one summary event when more
    than its first failure happened in it. Safe to call twice, or from two processes."""
    closed_key = _key(username, opened, "closed")
    if not cache.add(closed_key, 1, _keep_seconds()):
        return None  # closed already
    if cache.get(_key(username, "open")) == opened:
        cache.delete(_key(username, "open"))
    try:
        return _summary_record(username, opened)
    except Exception:
        cache.delete(closed_key)  # a retry may write it
        raise


def _summary_record(username: str, opened: str) -> AuditEvent | None:
    found = cache.get_many([_key(username, opened, name) for name in ("count", "last", "sources")])
    count = int(found.get(_key(username, opened, "count")) or 0)
    if count <= 1:
        return None
    last = found.get(_key(username, opened, "last")) or opened
    sources: list[str] = found.get(_key(username, opened, "sources")) or []
    where = ", ".join(sources) if sources else "unknown addresses"
    summary = f"{count} failed sign-ins for {username!r} from {where} between {opened} and {last}"
    return audit_record(
        "auth.login_failed_summary",
        actor=Actor(user=None, via="system", source=sources[0] if len(sources) == 1 else ""),
        detail={
            "username": username,
            "failures": count,
            "first_at": opened,
            "last_at": last,
            "sources": sources,
            "summary": summary,
        },
        **_user_object(username),
    )


def sign_in_locked_out(*, username: str, actor: Actor) -> AuditEvent | None:
    """Record that ``username`` is locked out, once per lock; None when already recorded."""
    username = username[:USERNAME_MAX]
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    if not cache.add(_key(username, "locked"), 1, minutes * 60):
        return None
    opened = cache.get(_key(username, "open"))
    count = cache.get(_key(username, opened, "count")) if opened else None
    return audit_record(
        "auth.lockout",
        actor=actor,
        detail={
            "username": username,
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "lockout_minutes": minutes,
            "failures_in_window": count,
            "window_opened": opened,
        },
        **_user_object(username),
    )


def forget_lockout(username: str) -> None:
    """After an unlock: the name's next lockout is recorded again."""
    cache.delete(_key(username[:USERNAME_MAX], "locked"))
