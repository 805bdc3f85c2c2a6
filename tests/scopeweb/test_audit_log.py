"""The audit log itself: the hash chain and its verify command, the PostgreSQL trigger, the page,
its CSV export and the API, and who may read them."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.chain import GENESIS
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import audit_chain_check, audit_head, audit_record
from tests.conftest import client_for

PAGE = reverse("audit_log")
CSV_URL = reverse("audit_events_csv")
API = reverse("api_audit_events")
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger exists on PostgreSQL only"
)


@contextmanager
def _trigger_off() -> Iterator[None]:
    """What a database owner can do: switch the append-only trigger off for a raw change."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only"
            )


def _events(count: int, user: User | None = None) -> list[AuditEvent]:
    return [
        audit_record(
            "test.step",
            actor=Actor.command(user),
            object_type="thing",
            object_id=n,
            before={"n": n - 1},
            after={"n": n},
        )
        for n in range(count)
    ]


def _verify() -> str:
    out = io.StringIO()
    call_command("verify_audit_log", "--batch-size", "2", stdout=out)
    return out.getvalue()


# The chain and the verify command


@pytest.mark.django_db
def test_each_event_links_to_the_one_before_and_the_chain_verifies(admin: User) -> None:
    start = AuditEvent.objects.count()
    events = _events(5, admin)
    assert events[1].prev_hash == events[0].hash
    assert events[4].prev_hash == events[3].hash
    assert AuditEvent.objects.order_by("id").first().prev_hash == GENESIS  # type: ignore[union-attr]
    report = audit_chain_check(batch_size=2)
    assert report.ok and report.checked == start + 5
    assert f"{start + 5} events, chain whole" in _verify()


@pytest.mark.django_db
def test_a_row_altered_by_hand_is_named_by_verify_audit_log(admin: User) -> None:
    events = _events(5, admin)
    altered = events[2]
    with _trigger_off(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET actor = %s WHERE id = %s", ["mallory", altered.pk]
        )
    with pytest.raises(CommandError) as failed:
        _verify()
    message = str(failed.value)
    assert f"event {altered.pk} (test.step, " in message
    assert "its fields no longer match its hash" in message
    assert failed.value.returncode == 1
    report = audit_chain_check()
    assert report.broken_id == altered.pk


@pytest.mark.django_db
def test_a_changed_before_value_is_detected(admin: User) -> None:
    events = _events(3, admin)
    with _trigger_off(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET after = %s WHERE id = %s", ['{"n": 99}', events[1].pk]
        )
    assert audit_chain_check().broken_id == events[1].pk


@pytest.mark.django_db
def test_a_deleted_middle_row_is_detected_at_the_event_after_it(admin: User) -> None:
    events = _events(4, admin)
    with _trigger_off(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError) as failed:
        _verify()
    assert f"event {events[2].pk} (test.step" in str(failed.value)
    assert "prev_hash is not the hash of the event before" in str(failed.value)


@pytest.mark.django_db
def test_an_anchor_quoted_outside_the_log_must_still_be_held(admin: User) -> None:
    _events(3, admin)
    head = audit_head()
    assert head is not None and head.event_id == AuditEvent.objects.latest("id").pk
    out = io.StringIO()
    call_command("verify_audit_log", "--anchor", head.anchor, stdout=out)
    assert "1 anchor held" in out.getvalue()
    # A log cut back to before the anchor: the chain alone would still verify.
    with pytest.raises(CommandError, match=f"event {head.event_id + 7} is missing: the log was"):
        call_command("verify_audit_log", "--anchor", f"{head.event_id + 7}:{head.sha256}")
    with pytest.raises(CommandError, match="has another hash: the log was rewritten"):
        call_command("verify_audit_log", "--anchor", f"{head.event_id}:{'0' * 64}")
    with pytest.raises(CommandError, match="is not an anchor"):
        call_command("verify_audit_log", "--anchor", "latest")


def test_verify_audit_log_refuses_a_batch_size_below_one() -> None:
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("verify_audit_log", "--batch-size", "0")


@pytest.mark.django_db
def test_two_events_cannot_follow_the_same_event(admin: User) -> None:
    first = _events(1, admin)[0]
    fork = AuditEvent(
        at=timezone.now(), via="command", action="test.fork", prev_hash=first.prev_hash,
        hash="f" * 64,
    )  # fmt: skip
    with pytest.raises(DatabaseError), transaction.atomic():
        fork.save()


# The PostgreSQL trigger


@on_postgresql
@pytest.mark.django_db
def test_postgresql_refuses_update_and_delete_on_the_audit_log(admin: User) -> None:
    event = _events(1, admin)[0]
    for sql in (
        "UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="other")
    event.refresh_from_db()
    assert event.actor == admin.username and audit_chain_check().ok


@on_postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_appends_keep_one_chain() -> None:
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            for step in range(10):
                audit_record(
                    "test.thread", actor=Actor.command(), object_type="t", object_id=f"{n}-{step}"
                )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = audit_chain_check()
    assert report.ok and AuditEvent.objects.filter(action="test.thread").count() == 60


# The page, the CSV export and the API


@pytest.mark.django_db
def test_auditors_and_admins_read_the_log_and_reviewers_do_not(
    reviewer: User, auditor: User, admin: User, outsider: User
) -> None:
    _events(2, admin)
    for user in (auditor, admin):
        for url in (PAGE, CSV_URL, API):
            assert client_for(user).get(url).status_code == 200, (user, url)
    for user in (reviewer, outsider):
        for url in (PAGE, CSV_URL, API):
            assert client_for(user).get(url).status_code == 403, (user, url)
    assert client_for(None).get(API).status_code == 401


@pytest.mark.django_db
def test_the_page_filters_by_actor_action_object_and_time(
    reviewer: User, auditor: User, admin: User
) -> None:
    audit_record("run.start", actor=Actor.command(reviewer), object_type="analysisrun", object_id=7)
    audit_record("run.cancel", actor=Actor.command(admin), object_type="analysisrun", object_id=7)
    audit_record(
        "retention.update",
        actor=Actor.command(admin),
        object_type="retentionprofile",
        object_id="UK",
        before={"default_days": 30},
        after={"default_days": 90},
    )
    client = client_for(auditor)

    def shown(**params: str) -> list[str]:
        page = client.get(PAGE, params).context["page"]
        return [event.action for event in page.object_list]

    assert shown(actor="rita") == ["run.start"]
    assert shown(action="run") == ["run.cancel", "run.start"]  # a prefix, newest first
    assert shown(action="run.start") == ["run.start"]
    assert shown(object_type="retentionprofile", object_id="UK") == ["retention.update"]
    later = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert shown(time_from=later) == []
    assert "retention.update" in shown(time_to=later)
    response = client.get(PAGE, {"action": "retention"})
    body = response.content.decode()
    assert "<b>default_days</b>: <code>30</code> → <code>90</code>" in body


@pytest.mark.django_db
def test_bad_filters_are_named_not_a_500(auditor: User) -> None:
    client = client_for(auditor)
    response = client.get(PAGE, {"time_from": "yesterday"})
    assert response.status_code == 200 and "time_from" in response.context["form"].errors
    response = client.get(PAGE, {"object_id": "3"})
    assert "object_type" in response.context["form"].errors
    response = client.get(CSV_URL, {"time_from": "2026-01-02", "time_to": "2026-01-01"})
    assert response.status_code == 400 and b"time_to" in response.content
    response = client.get(API, {"time_from": "not a time"})
    assert response.status_code == 400 and "time_from" in response.json()


@pytest.mark.django_db
def test_the_page_verifies_the_chain_on_demand(auditor: User, admin: User) -> None:
    events = _events(3, admin)
    client = client_for(auditor)
    assert client.get(PAGE).context["chain"] is None  # not on every page view
    response = client.get(PAGE, {"verify": "1"})
    assert response.context["chain"].ok
    assert b"Chain verified: " in response.content
    with _trigger_off(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [events[1].pk])
    response = client.get(PAGE, {"verify": "1"})
    assert f"Chain broken at event {events[1].pk}" in response.content.decode()
    # An anchor from a signed report, checked on the page.
    held = client.get(PAGE, {"anchor": f"{events[2].pk}:{events[2].hash}"}).content.decode()
    assert "Held: the log still holds this event" in held
    gone = client.get(PAGE, {"anchor": f"{events[2].pk + 9}:{events[2].hash}"}).content.decode()
    assert f"Not held: event {events[2].pk + 9} is missing" in gone


@pytest.mark.django_db
def test_the_csv_export_streams_the_filtered_events_and_is_itself_recorded(
    reviewer: User, auditor: User
) -> None:
    audit_record(
        "run.start",
        actor=Actor.command(reviewer),
        object_type="analysisrun",
        object_id=3,
        object_repr="=HYPERLINK(1)",
        after={"top_k": 32},
    )
    audit_record("trace.view", actor=Actor.command(reviewer), object_type="trace", object_id=9)
    response = client_for(auditor).get(CSV_URL, {"action": "run"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [row["action"] for row in rows] == ["run.start"]
    row = rows[0]
    assert row["actor"] == "rita" and row["object_id"] == "3" and row["after"] == '{"top_k": 32}'
    assert row["object_repr"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    assert len(row["hash"]) == 64
    export = AuditEvent.objects.get(action="audit.export")
    assert export.actor == "audrey" and export.detail == {"filters": {"action": "run"}}


@pytest.mark.django_db
def test_the_api_lists_filtered_events_newest_first(reviewer: User, auditor: User) -> None:
    _events(3, reviewer)
    audit_record("run.start", actor=Actor.command(reviewer), object_type="analysisrun", object_id=1)
    data = client_for(auditor).get(API, {"action": "test", "actor": "rita"}).json()
    assert data["count"] == 3
    assert [e["after"] for e in data["results"]] == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert set(data["results"][0]) >= {"at", "via", "object_type", "before", "prev_hash", "hash"}


@pytest.mark.django_db
def test_the_api_is_in_the_openapi_schema(auditor: User) -> None:
    schema = client_for(auditor).get(reverse("api_schema"), {"format": "json"}).json()
    operation = schema["paths"]["/api/audit/events/"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"actor", "action", "object_type", "object_id", "time_from", "time_to"} <= names


@pytest.mark.django_db
def test_the_nav_shows_the_audit_log_to_those_who_may_read_it(
    reviewer: User, auditor: User
) -> None:
    home = reverse("home")
    assert PAGE.encode() in client_for(auditor).get(home).content
    assert PAGE.encode() not in client_for(reviewer).get(home).content
