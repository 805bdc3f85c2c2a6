"""Controlled exports: request, the GDPR review (UK), the build in a worker, the single-use link.

An export's states (``governance.models``), and who moves it:

    awaiting_approval ──► queued ──► building ──► ready ──► downloaded
           │ (export_decide)          (export_execute)      (export_download)
           └──► refused                   └──► failed

``export_request`` starts it: a profile whose export policy is the GDPR review (UK) waits for an
admin other than the requester; every other profile is queued at once and its build is sent to
the worker once the request commits. A ready export's link is issued once, to its requester
(``export_link_issue``): the token is shown then and kept only as its sha256. Each step is
written to the audit log (``export.request``, ``export.approve``, ``export.refuse``,
``export.build``, ``export.build_failed``, ``export.link_issue``, ``export.download``).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.models import Export, ExportKind, ExportState
from governance.services.export_build import export_build
from governance.services.export_zip import ExportBuildError
from reports.models import AuditCase
from reports.selectors.cases import cases_visible_to
from scopeweb.accounts.access import describe
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.jobs.services import (
    JobError,
    job_create,
    job_enqueue,
    job_progress,
    job_running,
    job_succeed,
)
from scopeweb.refusals import Refused
from scopeweb.retention.models import ExportPolicy
from scopeweb.retention.services import expiry_for
from scopeweb.storage import delete_file, open_stored, store
from traces.models import AnalysisRun

PURPOSE_MAX = 2000
NOTE_MAX = 2000


class ExportRefused(Refused):
    """The export's state or the four-eyes rule refuses the step; the message says why."""


class LinkRefused(Refused):
    """A download link that cannot be used: ``status`` is 404 (unknown) or 410 (used, expired,
    or its export is gone)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, status=status)


@dataclass(frozen=True)
class Download:
    export: Export
    filename: str
    handle: IO[bytes]


def _snapshot(export: Export) -> dict[str, Any]:
    return {"state": export.state, "kind": export.kind, "target": export.target_id}


def _text(field: str, value: str, *, required: bool, limit: int) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationError({field: "Say why: this field is required."})
    if len(value) > limit:
        raise ValidationError({field: f"{len(value)} characters; at most {limit}."})
    return value


def _target(kind: str, target_id: Any, actor: Actor) -> tuple[AnalysisRun | AuditCase, str]:
    if kind not in ExportKind.values:
        raise ValidationError({"kind": f"{kind!r} is not one of {', '.join(ExportKind.values)}."})
    try:
        pk = int(target_id)
    except (TypeError, ValueError):
        raise ValidationError({"target_id": f"{target_id!r} is not a whole number."}) from None
    if pk <= 0 or pk > 2**62:
        raise ValidationError({"target_id": f"{pk} is not an id (1 to 2^62)."})
    if kind == ExportKind.RUN:
        if not actor.may("browse_traces"):
            raise PermissionDenied(f"Exporting a run needs {describe('browse_traces')}")
        run = AnalysisRun.objects.select_related("profile", "job", "prompt_set", "sae")
        found_run = run.filter(pk=pk).first()
        if found_run is None:
            raise ValidationError({"target_id": f"There is no run {pk}."})
        if found_run.job.state != JobState.SUCCEEDED or not found_run.manifest_sha256:
            raise ValidationError(
                {"target_id": f"Run {pk} is {found_run.job.get_state_display().lower()}; only a "
                 "run that finished can be exported."}
            )  # fmt: skip
        return found_run, f"Run {pk}: {found_run.prompt_set.name} × {found_run.sae.name}"
    found_case = cases_visible_to(actor.person).filter(pk=pk).first()
    if found_case is None:
        raise ValidationError({"target_id": f"There is no case {pk} that you may read."})
    return found_case, str(found_case)


def export_request(*, kind: str, target_id: Any, actor: Actor, purpose: str) -> Export:
    """Ask to export a run or a case (``export_data``; a run needs ``browse_traces`` too, a
    case must be one the user may read). A GDPR-review profile waits for an admin's approval;
    others are queued and built after the request commits. Raises ``ValidationError`` naming
    the field for bad input and ``PermissionDenied`` for a role that may not."""
    if not actor.may("export_data"):
        raise PermissionDenied(f"Exporting needs {describe('export_data')}")
    target, name = _target(kind, target_id, actor)
    purpose = _text("purpose", purpose, required=True, limit=PURPOSE_MAX)
    profile = target.profile
    review = profile.export_policy == ExportPolicy.GDPR_REVIEW
    with transaction.atomic():
        export = Export.objects.create(
            kind=kind,
            target_id=target.pk,
            target_repr=name[:300],
            profile=profile,
            state=ExportState.AWAITING_APPROVAL if review else ExportState.QUEUED,
            requested_by=actor.person,
            purpose=purpose,
            expires_at=expiry_for(profile),
        )
        audit_record(
            "export.request",
            actor=actor,
            obj=export,
            after=_snapshot(export),
            detail={"profile": profile.code, "purpose": purpose, "target": name},
        )
        if not review:
            _queue_build(export, actor.user)
    return export


def _queue_build(export: Export, user: User | None) -> None:
    """Give the export its job and send the job to a worker once the transaction commits."""
    job = job_create(
        kind=JobKind.EXPORT,
        title=f"Export {export.pk}: {export.target_repr}"[:200],
        created_by=user,
        params={"export_id": export.pk},
    )
    Export.objects.filter(pk=export.pk).update(job=job)
    export.job = job
    job_enqueue(job, "governance.tasks.export_build_task")


def export_decide(export: Export, *, approve: bool, note: str, actor: Actor) -> Export:
    """The GDPR review of an export awaiting approval: an admin (``approve_export``) other than
    its requester approves it (it is queued and built) or refuses it (with a note; it is never
    built). Raises ``ExportRefused`` for an export not awaiting approval or for the requester's
    own, and ``ValidationError`` for a refusal without a note."""
    admin = actor.person
    if not actor.may("approve_export"):
        raise PermissionDenied(f"Deciding on exports needs {describe('approve_export')}")
    note = _text("note", note, required=not approve, limit=NOTE_MAX)
    with transaction.atomic():
        locked = Export.objects.select_for_update().get(pk=export.pk)
        if locked.state != ExportState.AWAITING_APPROVAL:
            raise ExportRefused(
                f"Export {locked.pk} is {locked.get_state_display().lower()}; only an export "
                "awaiting approval can be approved or refused."
            )
        if locked.requested_by_id == admin.pk:
            raise ExportRefused(
                "Four-eyes: the requester of an export cannot approve or refuse it; another "
                "admin must."
            )
        before = _snapshot(locked)
        locked.state = ExportState.QUEUED if approve else ExportState.REFUSED
        locked.decided_by = admin
        locked.decided_at = timezone.now()
        locked.decision_note = note
        locked.save(update_fields=["state", "decided_by", "decided_at", "decision_note"])
        audit_record(
            "export.approve" if approve else "export.refuse",
            actor=actor,
            obj=locked,
            before=before,
            after=_snapshot(locked),
            detail={"note": note, "requested_by": getattr(locked.requested_by, "username", "")},
        )
        if approve:
            _queue_build(locked, admin)
    return locked


# --- the build (the worker) -----------------------------------------------------------------


def artifact_name(export: Export, sha256: str) -> str:
    return (
        f"exports/{export.pk}/export-{export.pk}-{export.kind}-{export.target_id}-{sha256[:12]}.zip"
    )


def export_execute(job_id: uuid.UUID | str) -> Export | None:
    """Build the job's export (the task's body): queued → building → ready, or failed with the
    reason. An export that is not queued (refused, awaiting approval) is never built."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        return None
    with job_running(job_id):
        export = Export.objects.select_related("profile", "requested_by", "decided_by").filter(
            job=job
        )
        found = export.first()
        if found is None:
            raise JobError("The export was removed before it could be built.")
        if found.state == ExportState.READY:  # a retried task whose first try got that far
            job_succeed(job_id, result=_result(found), note="already built")
            return found
        moved = Export.objects.filter(
            pk=found.pk, state__in=[ExportState.QUEUED, ExportState.BUILDING]
        ).update(state=ExportState.BUILDING)
        if not moved:
            raise JobError(
                f"Export {found.pk} is {found.get_state_display().lower()}; it is not built."
            )
        job_progress(job_id, done=0, total=2, note="collecting and redacting")
        try:
            built = export_build(found)
        except ExportBuildError as exc:
            export_fail(found.pk, str(exc), actor=Actor.worker(job.created_by))
            raise JobError(str(exc)) from None
        with built.handle:
            job_progress(job_id, done=1, total=2, note="storing")
            saved = artifact_name(found, built.sha256)
            store(saved, built.handle)
        try:
            with transaction.atomic():
                Export.objects.filter(pk=found.pk).update(
                    state=ExportState.READY,
                    artifact=saved,
                    sha256=built.sha256,
                    size_bytes=built.size_bytes,
                    redaction_report=built.redaction_report,
                )
                found.refresh_from_db()
                audit_record(
                    "export.build",
                    actor=Actor.worker(job.created_by),
                    obj=found,
                    before={"state": ExportState.BUILDING},
                    after=_snapshot(found),
                    detail={
                        "artifact": saved,
                        "sha256": built.sha256,
                        "size_bytes": built.size_bytes,
                        "files": built.files,
                        "redacted": built.redaction_report.get("counts", {}),
                    },
                )
        except Exception:
            delete_file(saved)  # never leave a stored export no row vouches for
            raise
        job_succeed(job_id, result=_result(found), note=f"{len(built.files) + 1} files")
        return found
    return None  # failed with its reason


def export_fail(export_id: int, reason: str, *, actor: Actor) -> None:
    """Mark an export that was being built failed (the build's reason, or the task's last
    error), with the audit event ``export.build_failed``."""
    moved = Export.objects.filter(
        pk=export_id, state__in=[ExportState.QUEUED, ExportState.BUILDING]
    ).update(state=ExportState.FAILED, decision_note=reason[:NOTE_MAX])
    if moved:
        audit_record(
            "export.build_failed",
            actor=actor,
            object_type="export",
            object_id=export_id,
            object_repr=f"export {export_id}",
            after={"state": ExportState.FAILED},
            detail={"reason": reason[:NOTE_MAX]},
        )


def _result(export: Export) -> dict[str, Any]:
    return {"export_id": export.pk, "sha256": export.sha256, "size_bytes": export.size_bytes}


# --- the single-use link ---------------------------------------------------------------------


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_hours() -> int:
    return int(getattr(settings, "SCOPEWEB_EXPORT_LINK_HOURS", 24))


def export_link_issue(export: Export, *, actor: Actor) -> str | None:
    """The download token of a ready export, made now and returned this once, when the actor
    is its requester and no link was issued yet; None otherwise. Only its sha256 is kept; the
    link expires ``SCOPEWEB_EXPORT_LINK_HOURS`` (default 24) hours from now."""
    if export.state != ExportState.READY or export.link_sha256:
        return None
    if actor.user is None or export.requested_by_id != actor.user.pk:
        return None
    token = secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(hours=link_hours())
    with transaction.atomic():
        # Conditional: of two first views at the same moment, one issues the link.
        issued = Export.objects.filter(
            pk=export.pk, state=ExportState.READY, link_sha256=""
        ).update(link_sha256=_token_sha256(token), link_expires_at=expires)
        if not issued:
            return None
        audit_record(
            "export.link_issue",
            actor=actor,
            obj=export,
            detail={"link_expires_at": expires.isoformat()},
        )
    export.refresh_from_db()
    return token


def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def export_download(token: str, *, actor: Actor) -> Download:
    """Use a download link once: the export's zip, opened for streaming. The export is marked
    downloaded by a conditional UPDATE, so of two racing downloads only one gets the file.
    Raises ``LinkRefused`` (404 unknown; 410 used, expired or gone)."""
    if not token or len(token) > 200:
        raise LinkRefused("There is no such export link.", 404)
    export = Export.objects.filter(link_sha256=_token_sha256(token)).first()
    if export is None:
        raise LinkRefused("There is no such export link.", 404)
    if export.state == ExportState.DOWNLOADED:
        raise LinkRefused(f"This link was used at {_stamp(export.downloaded_at)}.", 410)
    now = timezone.now()
    if export.link_expires_at is None or export.link_expires_at <= now:
        raise LinkRefused(f"This link expired at {_stamp(export.link_expires_at)}.", 410)
    if export.state != ExportState.READY or not export.artifact:
        raise LinkRefused(f"Export {export.pk} is {export.get_state_display().lower()}.", 410)
    try:
        handle = open_stored(export.artifact)
    except OSError as exc:
        raise LinkRefused(f"The file of export {export.pk} is gone ({exc}).", 410) from exc
    try:
        with transaction.atomic():
            won = Export.objects.filter(
                pk=export.pk,
                state=ExportState.READY,
                downloaded_at__isnull=True,
                link_expires_at__gt=now,
            ).update(state=ExportState.DOWNLOADED, downloaded_at=now, downloaded_by=actor.user)
            if not won:
                export.refresh_from_db()
                raise LinkRefused(f"This link was used at {_stamp(export.downloaded_at)}.", 410)
            audit_record(
                "export.download",
                actor=actor,
                obj=export,
                before={"state": ExportState.READY},
                after={"state": ExportState.DOWNLOADED},
                detail={
                    "sha256": export.sha256,
                    "size_bytes": export.size_bytes,
                    "requested_by": getattr(export.requested_by, "username", ""),
                },
            )
    except BaseException:
        handle.close()
        raise
    export.refresh_from_db()
    name = f"scopeweb-export-{export.pk}-{export.kind}-{export.target_id}.zip"
    return Download(export=export, filename=name, handle=handle)
