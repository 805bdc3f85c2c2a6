"""The purge deletes what expired and nothing protects, rows and files alike, item by item,
audited; a dry run deletes nothing; an interrupted purge is finished by the next one."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management import call_command
from django.utils import timezone

from governance.models import Export, ExportState, HoldTarget, LegalHold, PurgeRun
from governance.selectors.expiry import purge_candidates
from governance.services.purge import retention_purge
from reports.models import CaseState, Evidence
from scopeweb.audit.models import AuditEvent
from scopeweb.jobs.models import Job, JobState
from tests.governance.conftest import (
    cite,
    days,
    files_under,
    stored_export,
    stored_prompt_set,
    stored_run,
)
from traces.models import AnalysisRun, Prompt, PromptSet, Trace, TraceFeature

pytestmark = pytest.mark.django_db


def _events(action: str = "retention.purge") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_expired_run_and_prompt_set_go_with_their_rows_files_and_an_audit_event_each() -> None:
    prompt_set = stored_prompt_set(days(-1))
    run = stored_run(prompt_set, days(-1))
    run_id, ps_id, job_id = run.pk, prompt_set.pk, run.job_id
    upload = prompt_set.import_job.params["upload_path"]  # type: ignore[union-attr]
    assert len(files_under(run.artifact_prefix)) == 3

    record = retention_purge()

    assert record.state == PurgeRun.State.SUCCEEDED
    assert record.counts["runs"] == 1 and record.counts["prompt_sets"] == 1
    assert record.counts["traces"] == 2 and record.counts["prompts"] == 2
    assert record.bytes_freed == 3 * 100 + len(b'{"text": "hi"}\n' * 8)
    assert not AnalysisRun.objects.filter(pk=run_id).exists()
    assert not Trace.objects.filter(run_id=run_id).exists()
    assert not TraceFeature.objects.filter(trace__run_id=run_id).exists()
    assert not PromptSet.objects.filter(pk=ps_id).exists()
    assert not Prompt.objects.filter(prompt_set_id=ps_id).exists()
    assert not Job.objects.filter(pk=job_id).exists()
    assert files_under(f"runs/{run_id}") == []
    assert not default_storage.exists(upload)
    events = _events()
    assert [(e.object_type, e.object_id) for e in events] == [
        ("analysisrun", str(run_id)),
        ("promptset", str(ps_id)),
    ]
    assert events[0].detail["manifest_sha256"] == "ab" * 32
    assert events[0].detail["pins"] == {"model": "cd" * 32, "sae": "ef" * 32}
    assert events[1].detail["source_sha256"] == prompt_set.source_sha256


def test_nothing_held_cited_or_unexpired_is_deleted() -> None:
    fresh = stored_run(stored_prompt_set(days(10)), days(10))
    held_set = stored_prompt_set(days(-5))
    under_held_set = stored_run(held_set, days(-5))
    LegalHold.objects.create(target_type=HoldTarget.PROMPT_SET, target_id=held_set.pk, reason="x")
    held_run = stored_run(stored_prompt_set(days(-5)), days(-5))
    LegalHold.objects.create(target_type=HoldTarget.RUN, target_id=held_run.pk, reason="x")
    cited_open = stored_run(stored_prompt_set(days(-5)), days(-5))
    cite(cited_open, CaseState.IN_REVIEW)
    cited_signed = stored_run(stored_prompt_set(days(-5)), days(-5))
    cite(cited_signed, CaseState.SIGNED_OFF, hold_until=days(80))
    in_held_case = stored_run(stored_prompt_set(days(-5)), days(-5))
    case = cite(in_held_case, CaseState.CLOSED, hold_until=days(-1))
    LegalHold.objects.create(target_type=HoldTarget.CASE, target_id=case.pk, reason="x")
    still_running = stored_run(stored_prompt_set(days(-5)), days(-5), state=JobState.RUNNING)
    kept = [fresh, under_held_set, held_run, cited_open, cited_signed, in_held_case, still_running]

    record = retention_purge()

    assert record.counts["runs"] == 0
    for run in kept:
        assert AnalysisRun.objects.filter(pk=run.pk).exists()
        assert PromptSet.objects.filter(pk=run.prompt_set_id).exists()
        assert len(files_under(run.artifact_prefix)) == 3
    assert _events() == []


def test_a_case_past_its_extension_no_longer_holds_and_its_evidence_is_released() -> None:
    run = stored_run(stored_prompt_set(days(-40)), days(-40))
    case = cite(run, CaseState.SIGNED_OFF, hold_until=days(30))
    assert not purge_candidates(days(29)).runs.filter(pk=run.pk).exists()

    record = retention_purge(as_of=days(31))

    assert record.counts["runs"] == 1
    assert not Evidence.objects.filter(case=case).exists()
    (event,) = [e for e in _events() if e.object_type == "analysisrun"]
    assert event.detail["evidence_released"][0]["case_id"] == case.pk


def test_a_prompt_set_waits_for_its_runs() -> None:
    prompt_set = stored_prompt_set(days(-3))
    run = stored_run(prompt_set, days(5))
    assert retention_purge().counts["prompt_sets"] == 0
    assert PromptSet.objects.filter(pk=prompt_set.pk).exists()
    record = retention_purge(as_of=days(6))
    assert (record.counts["runs"], record.counts["prompt_sets"]) == (1, 1)
    assert not AnalysisRun.objects.filter(pk=run.pk).exists()


def test_expired_exports_lose_artifact_then_row_unless_building_or_held() -> None:
    run = stored_run(stored_prompt_set(days(10)), days(10))
    gone = stored_export(run, days(-1))
    building = stored_export(run, days(-1), state=ExportState.BUILDING)
    fresh = stored_export(run, days(1))
    held_run = stored_run(stored_prompt_set(days(10)), days(10))
    held = stored_export(held_run, days(-1))
    LegalHold.objects.create(target_type=HoldTarget.RUN, target_id=held_run.pk, reason="x")

    record = retention_purge()

    assert record.counts["exports"] == 1
    assert not Export.objects.filter(pk=gone.pk).exists()
    assert not default_storage.exists(gone.artifact)
    for kept in (building, fresh, held):
        assert Export.objects.filter(pk=kept.pk).exists() and default_storage.exists(kept.artifact)
    (event,) = _events()
    assert event.detail["sha256"] == "12" * 32


def test_dry_run_lists_and_deletes_nothing() -> None:
    run = stored_run(stored_prompt_set(days(-1)), days(-1))
    out = StringIO()
    call_command("purge", "--dry-run", stdout=out)
    assert f"would purge run {run.pk}" in out.getvalue()
    assert "3 files, 300 bytes" in out.getvalue()
    record = PurgeRun.objects.get()
    assert record.dry_run and record.counts["runs"] == 1 and record.counts["prompt_sets"] == 1
    assert AnalysisRun.objects.filter(pk=run.pk).exists()
    assert len(files_under(run.artifact_prefix)) == 3
    assert _events() == []


def test_moving_the_clock_forward_removes_exactly_what_expired_by_then() -> None:
    soon = stored_run(stored_prompt_set(days(40)), days(5))
    later = stored_run(stored_prompt_set(days(40)), days(20))
    as_of = (timezone.now() + timedelta(days=10)).isoformat()
    out = StringIO()
    call_command("purge", "--as-of", as_of, stdout=out)
    assert "purged 1 runs" in out.getvalue()
    assert not AnalysisRun.objects.filter(pk=soon.pk).exists()
    assert AnalysisRun.objects.filter(pk=later.pk).exists()
    assert PromptSet.objects.filter(pk=soon.prompt_set_id).exists()  # its own expiry is later
    assert [e.object_id for e in _events()] == [str(soon.pk)]


def test_purge_command_names_a_bad_as_of() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--as-of 'next week' is not an ISO date-time"):
        call_command("purge", "--as-of", "next week")


def test_an_interrupted_purge_is_finished_by_the_next_with_no_orphans() -> None:
    runs = [stored_run(stored_prompt_set(days(-1)), days(-1)) for _ in range(3)]
    real_delete = FileSystemStorage.delete
    calls = {"n": 0}

    def failing_delete(self: FileSystemStorage, name: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:  # the second run's second file
            raise OSError("storage went away")
        return real_delete(self, name)

    with (
        mock.patch.object(FileSystemStorage, "delete", failing_delete),
        pytest.raises(OSError, match="storage went away"),
    ):
        retention_purge()
    failed = PurgeRun.objects.get()
    assert failed.state == PurgeRun.State.FAILED and "storage went away" in failed.error
    assert failed.counts["runs"] == 1  # progress was recorded item by item
    # The first run is gone; the second keeps every row (its transaction rolled back) though
    # a file went; the third was not touched.
    assert not AnalysisRun.objects.filter(pk=runs[0].pk).exists()
    assert Trace.objects.filter(run_id=runs[1].pk).count() == 2
    assert len(files_under(runs[1].artifact_prefix)) == 2
    assert len(files_under(runs[2].artifact_prefix)) == 3

    again = retention_purge()

    assert again.state == PurgeRun.State.SUCCEEDED and again.counts["runs"] == 2
    assert not AnalysisRun.objects.exists() and not Trace.objects.exists()
    assert not TraceFeature.objects.exists() and not PromptSet.objects.exists()
    assert files_under("runs") == [] and files_under("uploads") == []
    assert sorted(int(e.object_id) for e in _events() if e.object_type == "analysisrun") == [
        r.pk for r in runs
    ]


def test_uk_originals_go_after_the_configured_hours_and_us_uploads_with_their_set(
    settings: Any,
) -> None:
    settings.RETENTION_ORIGINAL_HOURS = 24
    uk = stored_prompt_set(days(20), code="UK")
    fr_held = stored_prompt_set(days(20), code="FR")
    LegalHold.objects.create(target_type=HoldTarget.PROMPT_SET, target_id=fr_held.pk, reason="x")
    us = stored_prompt_set(days(20), code="US")
    uk_upload = uk.import_job.params["upload_path"]  # type: ignore[union-attr]

    assert retention_purge().counts["originals"] == 0  # not 24 hours old yet
    record = retention_purge(as_of=days(1.01))

    assert record.counts["originals"] == 1
    assert not default_storage.exists(uk_upload)
    assert PromptSet.objects.filter(pk=uk.pk).exists()
    assert default_storage.exists(fr_held.import_job.params["upload_path"])  # type: ignore[union-attr]
    assert default_storage.exists(us.import_job.params["upload_path"])  # type: ignore[union-attr]
    (event,) = _events("retention.purge_original")
    assert event.object_id == str(uk.pk) and event.detail["source_sha256"] == uk.source_sha256
    assert retention_purge(as_of=days(2)).counts["originals"] == 0  # marked: not again


def test_an_original_supplied_again_counts_its_hours_from_then(settings: Any) -> None:
    settings.RETENTION_ORIGINAL_HOURS = 24
    uk = stored_prompt_set(days(20), code="UK")
    job = uk.import_job
    assert job is not None
    job.params = {**job.params, "original_supplied_at": days(1.5).isoformat()}
    job.save(update_fields=["params"])

    assert retention_purge(as_of=days(2)).counts["originals"] == 0  # supplied 12 hours before
    assert retention_purge(as_of=days(2.6)).counts["originals"] == 1
