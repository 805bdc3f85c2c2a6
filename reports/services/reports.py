"""The signed PDF report of a signed-off case: queued when the case's last sign-off lands,
generated and signed in a worker on the ``default`` queue, stored through Django's storage.

A report's job goes queued → running → succeeded | failed (``scopeweb.jobs``). A ``CaseReport``
row exists only once the PDF is signed and stored: when signing fails nothing is stored and the
job fails with the reason, so no unsigned report is ever issued.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.db import transaction

from reports.models import AuditCase, CaseReport, CaseState
from reports.pdf.signing import SigningError, sign_pdf, signing_key_load, signing_timestamps
from reports.pdf.verify import VerifyResult, report_verify
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobKind
from scopeweb.jobs.services import (
    JobError,
    job_create,
    job_enqueue,
    job_progress,
    job_running,
    job_succeed,
)
from scopeweb.refusals import Refused
from scopeweb.storage import bytes_sha256, delete_file, read_bytes, store


class ReportError(Refused):
    """A report cannot be made for this case; the message says why."""


def report_artifact_name(case: AuditCase, sha256: str) -> str:
    return f"reports/case-{case.pk}/report-{sha256[:16]}.pdf"


def report_job(case: AuditCase) -> Job | None:
    """The newest report job of ``case``, finished or not."""
    return (
        Job.objects.filter(kind=JobKind.CASE_REPORT, params__case_id=case.pk)
        .order_by("-created_at")
        .first()
    )


def report_queue(*, case: AuditCase, actor: Actor) -> Job:
    """Queue the generation of ``case``'s signed report (after the surrounding transaction
    commits) and return its job. A job already queued or running for the case is returned
    instead of a second one. Raises ``ReportError`` when the case is not signed off or already
    has its report."""
    if case.state != CaseState.SIGNED_OFF:
        raise ReportError(
            f"Case {case.pk} is {case.get_state_display().lower()}; only a signed-off case "
            "gets a report."
        )
    if CaseReport.objects.filter(case=case).exists():
        raise ReportError(f"Case {case.pk} already has its signed report.")
    with transaction.atomic():
        current = report_job(case)
        if current is not None and not current.finished:
            return current
        job = job_create(
            kind=JobKind.CASE_REPORT,
            title=f"Signed report of case {case.pk}: {case.title}"[:200],
            created_by=actor.user,
            params={"case_id": case.pk},
        )
        job_enqueue(job, "reports.tasks.case_report_task")
    return job


def report_execute(job_id: uuid.UUID | str) -> CaseReport | None:
    """Generate the job's report (the task's body). A reason the report cannot be made or
    signed fails the job with that reason; anything else propagates for the task to retry."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        return None
    with job_running(job_id):
        case = AuditCase.objects.filter(pk=job.params.get("case_id")).first()
        if case is None:
            raise JobError("The case was removed before its report could be made.")
        existing = CaseReport.objects.filter(case=case).first()
        if existing is not None:  # a retried task whose first attempt got as far as storing
            job_succeed(job_id, result=_result(existing), note="already generated")
            return existing
        try:
            report = report_generate(case, job=job, actor=Actor.worker(job.created_by))
        except (ReportError, SigningError) as exc:
            raise JobError(str(exc)) from None
        job_succeed(
            job_id,
            result=_result(report),
            note=f"{report.pages} pages, signed in {report.generation_seconds:.1f} s",
        )
        return report
    return None  # the job failed with its reason


def _result(report: CaseReport) -> dict[str, Any]:
    return {
        "case_id": report.case_id,
        "report_id": report.pk,
        "sha256": report.sha256,
        "pages": report.pages,
        "size_bytes": report.size_bytes,
        "self_signed": report.self_signed,
        "timestamped": report.timestamped,
    }


def report_generate(case: AuditCase, *, actor: Actor, job: Job | None = None) -> CaseReport:
    """Render ``case``'s report to PDF, sign it with the deployment's key, store it and record
    it (with the audit event ``report.generate``). Raises ``ReportError`` for a case that is not
    signed off or already has a report, and ``SigningError`` when signing fails (then nothing
    is stored)."""
    from reports.pdf.document import report_document
    from reports.pdf.render import render_pdf

    started = time.monotonic()
    case.refresh_from_db()
    if case.state != CaseState.SIGNED_OFF:
        raise ReportError(
            f"Case {case.pk} is {case.get_state_display().lower()}; only a signed-off case "
            "gets a report."
        )
    if CaseReport.objects.filter(case=case).exists():
        raise ReportError(f"Case {case.pk} already has its signed report.")

    def progress(note: str, done: int) -> None:
        if job is not None:
            job_progress(job.pk, done=done, total=4, note=note)

    # The key first: a report that cannot be signed is not worth rendering, and the cover
    # says whose key signs it (and whether it is a self-signed development key).
    key = signing_key_load()
    progress("collecting the evidence", 0)
    document = report_document(
        case,
        signer_subject=key.subject,
        self_signed=key.self_signed,
        timestamped=signing_timestamps(),
    )
    progress("rendering the PDF", 1)
    rendered = render_pdf(document)
    progress("signing", 2)
    signed = sign_pdf(
        rendered.data,
        reason=f"Interpretability report of audit case {case.pk}, signed off",
        location="Scope Web",
        key=key,
    )
    progress("storing", 3)
    sha256 = bytes_sha256(signed.data)
    name = report_artifact_name(case, sha256)
    store(name, signed.data)
    try:
        with transaction.atomic():
            report = CaseReport.objects.create(
                case=case,
                job=job,
                artifact=name,
                sha256=sha256,
                size_bytes=len(signed.data),
                pages=rendered.pages,
                signer_subject=signed.subject[:300],
                self_signed=signed.self_signed,
                timestamped=signed.timestamped,
                generation_seconds=round(time.monotonic() - started, 3),
            )
            audit_record(
                "report.generate",
                actor=actor,
                obj=case,
                after={"sha256": sha256, "pages": rendered.pages, "size_bytes": len(signed.data)},
                detail={
                    "report_id": report.pk,
                    "artifact": name,
                    "signer": signed.subject,
                    "self_signed": signed.self_signed,
                    "timestamped": signed.timestamped,
                    "seconds": report.generation_seconds,
                },
            )
    except Exception:
        delete_file(name)  # never leave a stored report that no row vouches for
        raise
    return report


def report_bytes(report: CaseReport) -> bytes:
    """The stored signed PDF. Raises ``OSError`` when the file is gone."""
    return read_bytes(report.artifact)


def report_download(*, case: AuditCase, actor: Actor) -> tuple[CaseReport, bytes] | None:
    """The case's signed report and its bytes (audit event ``report.download``), or None when
    it has none. Raises ``ReportError`` when the stored file is gone or no longer matches."""
    report = CaseReport.objects.filter(case=case).first()
    if report is None:
        return None
    try:
        data = report_bytes(report)
    except OSError as exc:
        raise ReportError(f"The stored report of case {case.pk} cannot be read ({exc}).") from exc
    if bytes_sha256(data) != report.sha256:
        raise ReportError(
            f"The stored report of case {case.pk} no longer matches its recorded sha256; "
            "it is not served."
        )
    audit_record(
        "report.download",
        actor=actor,
        obj=case,
        detail={"report_id": report.pk, "sha256": report.sha256},
    )
    return report, data


def report_verify_recorded(data: bytes, *, filename: str, actor: Actor) -> VerifyResult:
    """``report_verify`` with the audit event ``report.verify`` (what was checked, the
    verdict, and the case when it is a report issued here)."""
    result = report_verify(data)
    report = result.report
    audit_record(
        "report.verify",
        actor=actor,
        obj=report.case if report is not None else None,
        object_type="" if report is not None else "file",
        object_repr="" if report is not None else filename[:300],
        detail={
            "filename": filename[:200],
            "sha256": result.sha256,
            "valid": result.valid,
            "whole_file": result.whole_file,
            "issued_here": result.issued_here,
            "signer": result.signer_subject,
            "problem": result.problem,
        },
    )
    return result
