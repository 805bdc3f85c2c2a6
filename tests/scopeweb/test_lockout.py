"""Sign-in lockout (django-axes) and failed sign-ins recorded in aggregate: a guesser is stopped
after AXES_FAILURE_LIMIT wrong passwords for a name, told so on a page, not a 500; an admin
unlocks; and a flood leaves a handful of audit events, not one per attempt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scopeweb.audit import sign_ins
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import audit_chain_check
from tests.conftest import client_for
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
LIMIT = 50


def _sign_in(password: str, *, username: str = "rita", address: str = "192.0.2.7") -> Any:
    return Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


def _fail(times: int, **kwargs: Any) -> list[int]:
    return [_sign_in("wrong guess", **kwargs).status_code for _ in range(times)]


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def test_the_fiftieth_wrong_password_locks_the_name_with_a_page_that_says_why(
    reviewer: User,
) -> None:
    assert _fail(LIMIT - 1) == [200] * (LIMIT - 1)  # the form again, with its error
    locked = _sign_in("wrong guess")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Sign-in paused" in page and "50 wrong passwords" in page and "30 minutes" in page
    assert locked["Retry-After"] == "1800"
    right = _sign_in(PASSWORD)  # even the right password, while locked
    assert right.status_code == 429 and "_auth_user_id" not in right.client.session


def test_the_lock_is_on_the_name_from_every_address_and_no_other(
    reviewer: User, second_reviewer: User
) -> None:
    for n in range(LIMIT):
        _sign_in("wrong guess", address=f"198.51.100.{n}")  # one guess per address
    assert _sign_in(PASSWORD, address="203.0.113.9").status_code == 429
    assert _sign_in(PASSWORD, username="rob").status_code == 302  # another name signs in


def test_the_lock_ends_after_the_cool_off(reviewer: User) -> None:
    _fail(LIMIT)
    assert _sign_in(PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=31))
    assert _sign_in(PASSWORD).status_code == 302


def test_an_admin_sees_the_lock_and_unlocks_the_user(reviewer: User, admin: User) -> None:
    _fail(LIMIT)
    client = client_for(admin)
    assert "locked out" in client.get(reverse("user_list")).content.decode()
    edit = client.get(reverse("user_edit", args=[reviewer.pk])).content.decode()
    assert "locked out" in edit and reverse("user_unlock", args=[reviewer.pk]) in edit
    response = client.post(reverse("user_unlock", args=[reviewer.pk]))
    assert response.status_code == 302
    assert "Not locked out" in client.get(reverse("user_edit", args=[reviewer.pk])).content.decode()
    unlocked = AuditEvent.objects.get(action="user.unlock")
    assert unlocked.actor == "ada" and unlocked.object_id == str(reviewer.pk)
    assert _sign_in(PASSWORD).status_code == 302
    # Locked again later: that lockout is recorded too.
    _fail(LIMIT)
    assert AuditEvent.objects.filter(action="auth.lockout").count() == 2


def test_a_flood_of_failed_sign_ins_leaves_a_handful_of_audit_events(
    reviewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    before = AuditEvent.objects.count()
    with (
        mock.patch("scopeweb.audit.sign_ins.current_app") as celery_app,
        django_capture_on_commit_callbacks(execute=True),
    ):
        codes = [
            _sign_in("wrong guess", address=f"192.0.2.{n % 2 + 1}").status_code for n in range(200)
        ]
    assert codes.count(200) == LIMIT - 1 and codes.count(429) == 200 - (LIMIT - 1)
    # The first failure is recorded on its own, the lockout once; the rest are counted.
    assert _actions()[before:] == ["auth.login_failed", "auth.lockout"]
    first = AuditEvent.objects.get(action="auth.login_failed")
    assert first.detail == {"username": "rita"} and first.source == "192.0.2.1"
    lockout = AuditEvent.objects.get(action="auth.lockout")
    assert lockout.object_id == str(reviewer.pk) and lockout.detail["failure_limit"] == LIMIT
    assert lockout.detail["failures_in_window"] == LIMIT
    # One task closes the window, queued when it opened, not one per failure.
    send_task = celery_app.send_task
    send_task.assert_called_once()
    (task,) = send_task.call_args.args
    username, opened = send_task.call_args.kwargs["args"]
    assert task == sign_ins.CLOSE_TASK and username == "rita"
    assert send_task.call_args.kwargs["countdown"] > 15 * 60

    summary = sign_ins.sign_in_window_close(username=username, opened=opened)  # as the task does
    assert summary is not None and summary.action == "auth.login_failed_summary"
    assert summary.detail["failures"] == 200
    assert sorted(summary.detail["sources"]) == ["192.0.2.1", "192.0.2.2"]
    assert summary.detail["summary"].startswith("200 failed sign-ins for 'rita' from ")
    assert sign_ins.sign_in_window_close(username=username, opened=opened) is None  # once
    assert AuditEvent.objects.count() - before == 3
    assert audit_chain_check().ok


def test_the_next_failure_after_the_window_closes_it(
    reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail(3)
    assert _actions() == ["auth.login_failed"]
    later = timezone.now() + timedelta(minutes=16)
    monkeypatch.setattr(timezone, "now", lambda: later)
    _fail(1)
    assert _actions() == ["auth.login_failed", "auth.login_failed_summary", "auth.login_failed"]
    summary = AuditEvent.objects.get(action="auth.login_failed_summary")
    assert summary.detail["failures"] == 3 and summary.source == "192.0.2.7"


def test_a_window_with_one_failure_writes_no_summary(reviewer: User) -> None:
    _fail(1)
    opened = cache.get(sign_ins._key("rita", "open"))
    assert sign_ins.sign_in_window_close(username="rita", opened=opened) is None
    assert _actions() == ["auth.login_failed"]
