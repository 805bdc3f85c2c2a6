"""Legal holds, re-applying a profile's retention, the expiries page and purge now: admin-only,
audited, and bad input answered with the field at fault."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from governance.models import LegalHold, PurgeRun
from governance.services.holds import HoldError, hold_lift, hold_place
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.jobs.models import Job, JobKind
from scopeweb.retention.models import RetentionProfile
from tests.conftest import client_for
from tests.governance.conftest import days, stored_prompt_set, stored_run
from traces.models import AnalysisRun, PromptSet

pytestmark = pytest.mark.django_db


def test_admin_places_and_lifts_a_hold_through_the_pages_both_audited(admin: Any) -> None:
    run = stored_run(stored_prompt_set(days(-1)), days(-1))
    client = client_for(admin)
    form = client.get(reverse("retention_hold_place") + f"?target_type=run&target_id={run.pk}")
    assert f'value="{run.pk}"' in form.content.decode()
    response = client.post(
        reverse("retention_hold_place"),
        {"target_type": "run", "target_id": run.pk, "reason": "Litigation 2026-17"},
    )
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert (hold.target_type, hold.target_id, hold.placed_by) == ("run", run.pk, admin)
    assert str(run.pk) in hold.target_repr
    placed = AuditEvent.objects.get(action="hold.place")
    assert placed.detail["reason"] == "Litigation 2026-17" and placed.actor == "ada"
    run_page = client.get(reverse("run_detail", kwargs={"run_id": run.pk})).content.decode()
    assert f"Legal hold {hold.pk}" in run_page

    lift_url = reverse("retention_hold_lift", kwargs={"hold_id": hold.pk})
    refused = client.post(lift_url, {"lift_reason": "  "})
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    assert client.post(lift_url, {"lift_reason": "Settled"}).status_code == 302
    hold.refresh_from_db()
    assert hold.lifted_at is not None and hold.lift_reason == "Settled"
    assert AuditEvent.objects.get(action="hold.lift").detail["reason"] == "Settled"
    listing = client.get(reverse("retention_holds")).content.decode()
    assert "Settled" in listing and "No active holds." in listing


def test_hold_refusals_name_the_field(admin: Any, reviewer: Any) -> None:
    prompt_set = stored_prompt_set(days(1))
    with pytest.raises(HoldError, match="There is no run with id 999999") as missing:
        hold_place(actor=Actor.command(admin), target_type="run", target_id=999999, reason="r")
    assert missing.value.field == "target_id"
    with pytest.raises(HoldError, match="A reason is required") as no_reason:
        hold_place(
            actor=Actor.command(admin),
            target_type="prompt_set",
            target_id=prompt_set.pk,
            reason=" ",
        )
    assert no_reason.value.field == "reason"
    with pytest.raises(PermissionDenied):
        hold_place(
            actor=Actor.command(reviewer),
            target_type="prompt_set",
            target_id=prompt_set.pk,
            reason="r",
        )
    hold = hold_place(
        actor=Actor.command(admin), target_type="prompt_set", target_id=prompt_set.pk, reason="r"
    )
    with pytest.raises(HoldError, match=f"Hold {hold.pk} already holds"):
        hold_place(
            actor=Actor.command(admin),
            target_type="prompt_set",
            target_id=prompt_set.pk,
            reason="r",
        )
    hold_lift(actor=Actor.command(admin), hold=hold, reason="done")
    with pytest.raises(HoldError, match="already lifted"):
        hold_lift(actor=Actor.command(admin), hold=hold, reason="again")
    page = client_for(admin).post(
        reverse("retention_hold_place"), {"target_type": "case", "target_id": 424242, "reason": "r"}
    )
    assert page.status_code == 200 and "There is no case with id 424242" in page.content.decode()


def test_reapply_shows_how_many_items_it_moves_then_moves_them_audited(admin: Any) -> None:
    us = RetentionProfile.objects.get(code="US")
    old = stored_prompt_set(days(30))
    PromptSet.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    run = stored_run(old, days(30))
    AnalysisRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(days=40))
    us.retention_days = 90
    us.save()
    client = client_for(admin)
    url = reverse("retention_reapply", kwargs={"code": "US"})
    confirm = client.get(url).content.decode()
    assert "moves <b>2</b> items: 1 prompt sets, 1 runs and 0 exports" in confirm
    assert client.post(url).status_code == 302
    old.refresh_from_db()
    run.refresh_from_db()
    assert old.expires_at == old.created_at + timedelta(days=90)
    assert run.expires_at == run.created_at + timedelta(days=90)
    event = AuditEvent.objects.get(action="retention.reapply")
    assert event.detail["moved"] == {"prompt_sets": 1, "runs": 1, "exports": 0}
    assert "moves <b>0</b> items" in client.get(url).content.decode()


def test_editing_a_profile_keeps_existing_expiries(admin: Any) -> None:
    from scopeweb.retention.services import retention_profile_update

    prompt_set = stored_prompt_set(days(10))
    before = prompt_set.expires_at
    retention_profile_update(
        profile=RetentionProfile.objects.get(code="US"),
        actor=Actor.command(admin),
        values={"retention_days": 365},
    )
    prompt_set.refresh_from_db()
    assert prompt_set.expires_at == before


def test_expiries_page_lists_upcoming_holds_and_history_and_purge_now_queues(
    admin: Any, django_capture_on_commit_callbacks: Any
) -> None:
    run = stored_run(stored_prompt_set(days(20)), days(3))
    hold_place(
        actor=Actor.command(admin),
        target_type="prompt_set",
        target_id=run.prompt_set_id,
        reason="keep",
    )
    client = client_for(admin)
    with (
        mock.patch("scopeweb.jobs.services.current_app.send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(reverse("retention_purge_now"))
    assert response.status_code == 302
    job = Job.objects.get(kind=JobKind.PURGE)
    send.assert_called_once_with("governance.tasks.retention_purge_job_task", args=[str(job.pk)])
    from governance.tasks import retention_purge_job_task

    retention_purge_job_task.apply(args=(str(job.pk),))
    job.refresh_from_db()
    assert job.state == "succeeded" and job.result["purge_run"] == PurgeRun.objects.get().pk
    page = client.get(reverse("retention_expiries")).content.decode()
    assert f"run {run.pk} of" in page and "kept (held, cited or running)" in page
    assert "keep" in page and "web (ada)" in page
    assert AuditEvent.objects.filter(action="retention.purge_request").count() == 1


def test_preview_page_moves_the_clock_and_names_a_bad_date(admin: Any) -> None:
    run = stored_run(stored_prompt_set(days(40)), days(5))
    client = client_for(admin)
    url = reverse("retention_purge_preview")
    assert "would delete 0 items" in client.get(url).content.decode()
    later = (timezone.now() + timedelta(days=6)).strftime("%Y-%m-%d %H:%M")
    page = client.get(url, {"as_of": later}).content.decode()
    assert "would delete 1 item" in page and str(run) in page
    bad = client.get(url, {"as_of": "someday"})
    assert bad.status_code == 200 and "Enter a valid date/time" in bad.content.decode()
    assert AnalysisRun.objects.filter(pk=run.pk).exists()


def test_retention_pages_are_admin_only(reviewer: Any, auditor: Any) -> None:
    for user in (reviewer, auditor):
        client = client_for(user)
        for name in ("retention_holds", "retention_expiries", "storage_cost"):
            assert client.get(reverse(name)).status_code == 403
        assert client.post(reverse("retention_purge_now")).status_code == 403
        assert client.post(reverse("retention_reapply", kwargs={"code": "US"})).status_code == 403
    assert not Job.objects.filter(kind=JobKind.PURGE).exists()
