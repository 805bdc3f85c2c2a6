"""Expiry is set from the profile when an item is made, back-filled for older rows, and
extended by the cases that cite it and by legal holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from governance.models import HoldTarget, LegalHold
from governance.selectors.expiry import purge_candidates, upcoming_expiries
from reports.models import CaseState
from scopeweb.accounts.actor import Actor
from scopeweb.retention.models import RetentionProfile
from scopeweb.retention.services import expiry_for
from scopeweb.schedule import parse_crontab, purge_schedule
from tests.factories import make_prompt_set, make_sae
from tests.governance.conftest import cite, days, stored_prompt_set, stored_run
from traces.models import AnalysisRun, PromptSet
from traces.services.runs import run_start

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("code", "retention"), [("US", 30), ("UK", 90), ("FR", 365)])
def test_expiry_follows_the_profile(code: str, retention: int) -> None:
    profile = RetentionProfile.objects.get(code=code)
    profile.retention_days = retention
    profile.save()
    now = timezone.now()
    assert expiry_for(profile, now) == now + timedelta(days=retention)


def test_a_run_gets_its_expiry_when_it_starts() -> None:
    uk = RetentionProfile.objects.get(code="UK")
    uk.retention_days = 90
    uk.save()
    run = run_start(
        actor=Actor.command(), prompt_set=make_prompt_set(profile=uk), sae=make_sae(), queue=False
    )
    assert run.expires_at is not None
    assert abs(run.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)


def test_back_fill_gives_older_rows_their_expiry_and_keeps_set_ones() -> None:
    migration = __import__(
        "scopeweb.retention.migrations.0006_backfill_expiry", fromlist=["backfill"]
    )
    old = make_prompt_set(expires_at=None)
    PromptSet.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    kept = make_prompt_set(expires_at=days(99))
    migration.backfill(apps, None)
    old.refresh_from_db()
    kept.refresh_from_db()
    assert old.expires_at == old.created_at + timedelta(days=30)
    assert abs(kept.expires_at - days(99)) < timedelta(minutes=1)  # type: ignore[operator]


def test_an_open_case_holds_what_it_cites_without_end() -> None:
    run = stored_run(stored_prompt_set(days(-1)), days(-1))
    cite(run, CaseState.OPEN)
    far = purge_candidates(days(3650))
    assert not far.runs.filter(pk=run.pk).exists()
    assert not far.prompt_sets.filter(pk=run.prompt_set_id).exists()


def test_a_signed_off_case_extends_expiry_until_its_hold_passes() -> None:
    run = stored_run(stored_prompt_set(days(-1)), days(-1))
    cite(run, CaseState.SIGNED_OFF, hold_until=days(90))
    assert not purge_candidates(days(89)).runs.filter(pk=run.pk).exists()
    assert purge_candidates(days(91)).runs.filter(pk=run.pk).exists()
    assert purge_candidates(days(91)).prompt_sets.filter(pk=run.prompt_set_id).exists()


def test_a_lifted_hold_no_longer_protects() -> None:
    run = stored_run(stored_prompt_set(days(-1)), days(-1))
    hold = LegalHold.objects.create(target_type=HoldTarget.RUN, target_id=run.pk, reason="x")
    assert not purge_candidates().runs.filter(pk=run.pk).exists()
    hold.lifted_at = timezone.now()
    hold.save()
    assert purge_candidates().runs.filter(pk=run.pk).exists()


def test_upcoming_expiries_count_what_goes_and_what_is_held() -> None:
    going = stored_run(stored_prompt_set(days(40)), days(3))
    held = stored_run(stored_prompt_set(days(40)), days(5))
    LegalHold.objects.create(target_type=HoldTarget.RUN, target_id=held.pk, reason="x")
    stored_run(stored_prompt_set(days(40)), days(20))
    week, month = upcoming_expiries(7), upcoming_expiries(30)
    assert (week.counts["runs"], week.held["runs"]) == (2, 1)
    assert month.counts["runs"] == 3
    flags = {run.pk: run.protected for run in week.items["runs"]}
    assert flags == {going.pk: False, held.pk: True}
    assert AnalysisRun.objects.count() == 3


def test_purge_schedule_reads_a_crontab_and_names_a_bad_one() -> None:
    assert str(purge_schedule({})).startswith("<crontab: 30 3 * * *")
    assert parse_crontab("X", "0 */6 * * 1-5")["day_of_week"] == "1-5"
    with pytest.raises(ImproperlyConfigured, match="SCOPEWEB_PURGE_SCHEDULE='daily'"):
        purge_schedule({"SCOPEWEB_PURGE_SCHEDULE": "daily"})
    with pytest.raises(ImproperlyConfigured, match="X='61 \\* \\* \\* \\*'"):
        parse_crontab("X", "61 * * * *")


def test_an_imported_prompt_set_gets_its_expiry(reviewer: User) -> None:
    from tests.traces.conftest import import_prompt_set

    fr = RetentionProfile.objects.get(code="FR")
    fr.retention_days = 365
    fr.save()
    prompt_set = import_prompt_set(reviewer, ["hello there", "a second prompt"], profile="FR")
    assert prompt_set.expires_at is not None
    assert abs(prompt_set.expires_at - (timezone.now() + timedelta(days=365))) < timedelta(
        minutes=1
    )
