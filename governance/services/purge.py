"""The retention purge: deletes expired, unprotected items and their stored artifacts.

Order, per item, inside one transaction: lock the item (and what a hold or a case could be
placed on above it), check again that it is still expired and free, delete its files and its
rows, and write its audit event last; the transaction commits after the last file is gone. An
interruption before the commit leaves the rows in place (and perhaps fewer files); the next
purge finds the item again and finishes it, a file already gone counting as deleted. The audit
event comes last because ``audit_record`` takes the audit log's lock, which serialises every
audit event of the deployment until the commit: storage deletes (slow on an object store) never
run while it is held. A ``PurgeRun`` records each pass and its progress item by item.

Kinds go in this order: original uploads of prompt sets redacted before storage, runs (index
rows, traces, bundle files), prompt sets (prompts, upload), exports (artifact, row).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from governance.models import Export, PurgeRun
from governance.selectors.expiry import (
    export_candidates,
    original_candidates,
    prompt_set_candidates,
    purge_candidates,
    run_candidates,
)
from reports.models import AuditCase, Evidence
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobKind
from scopeweb.jobs.services import job_create, job_enqueue, job_running, job_succeed
from scopeweb.storage import (
    delete_file,
    exists,
    remove_empty_folder,
    storage_files,
    stored_size,
)
from traces.models import AnalysisRun, Prompt, PromptSet, Trace, TraceFeature

log = logging.getLogger(__name__)
BATCH = 100  # items fetched per query
ROW_BATCH = 500  # traces or prompts deleted per statement
COUNT_KEYS = ("runs", "traces", "prompt_sets", "prompts", "exports", "originals", "files")
VIA = {"beat": "worker", "web": "worker", "command": "command"}


@dataclass
class Removed:
    """What one item's purge removed."""

    counts: dict[str, int]
    bytes: int


@dataclass
class PreviewItem:
    kind: str
    pk: int
    label: str
    expires_at: datetime | None
    files: int = 0
    bytes: int = 0


def _chunks(values: list[int], size: int = ROW_BATCH) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _Pass:
    """One purge pass: who asked, the clock, and the ``PurgeRun`` it keeps up to date."""

    def __init__(self, record: PurgeRun, actor: Actor) -> None:
        self.record = record
        self.as_of = record.as_of
        self.actor = actor

    def audit(self, action: str, obj: Any, detail: dict[str, Any]) -> None:
        audit_record(
            action,
            actor=self.actor,
            obj=obj,
            detail={"purge": self.record.pk, "as_of": self.as_of, **detail},
        )

    def tally(self, removed: Removed) -> None:
        counts = dict(self.record.counts)
        for key, value in removed.counts.items():
            counts[key] = counts.get(key, 0) + value
        self.record.counts = counts
        self.record.bytes_freed += removed.bytes
        self.record.save(update_fields=["counts", "bytes_freed"])

    def drain(
        self, candidates: Callable[[], QuerySet[Any]], purge_one: Callable[[int], Removed | None]
    ) -> None:
        """Purge ``candidates`` in batches until none is left; an item whose re-check fails is
        skipped for the rest of the pass."""
        skipped: set[int] = set()
        while True:
            ids = list(candidates().exclude(pk__in=skipped).values_list("pk", flat=True)[:BATCH])
            if not ids:
                return
            for pk in ids:
                removed = purge_one(pk)
                if removed is None:
                    skipped.add(pk)
                else:
                    self.tally(removed)

    # --- one item of each kind ----------------------------------------------------------------

    def purge_original(self, prompt_set_id: int) -> Removed | None:
        with transaction.atomic():
            prompt_set = PromptSet.objects.select_for_update().filter(pk=prompt_set_id).first()
            if (
                prompt_set is None
                or not original_candidates(self.as_of).filter(pk=prompt_set_id).exists()
            ):
                return None
            job = Job.objects.select_for_update().get(prompt_set=prompt_set)
            path = str(job.params["upload_path"])
            existed = exists(path)
            size = stored_size(path) if existed else 0
            job.params = {**job.params, "original_purged_at": timezone.now().isoformat()}
            job.save(update_fields=["params"])
            if existed:
                delete_file(path)  # before the audit event: see the module's docstring
                self.audit(
                    "retention.purge_original",
                    prompt_set,
                    {
                        "path": path,
                        "bytes": size,
                        "source_sha256": prompt_set.source_sha256,
                        "profile": prompt_set.profile.code,
                    },
                )
        return Removed({"originals": int(existed), "files": int(existed)}, size)

    def purge_run(self, run_id: int) -> Removed | None:
        with transaction.atomic():
            run = AnalysisRun.objects.select_for_update().filter(pk=run_id).first()
            if run is None:
                return None
            # Holds and evidence are placed under these locks too: none can slip in between
            # the check below and the deletion.
            list(PromptSet.objects.select_for_update().filter(pk=run.prompt_set_id))
            citing = Evidence.objects.filter(trace__run_id=run_id).values("case_id")
            list(AuditCase.objects.select_for_update().filter(pk__in=citing))
            if not run_candidates(self.as_of).filter(pk=run_id).exists():
                return None
            files = storage_files(run.artifact_prefix)
            size = sum(stored_size(name) for name in files)
            # Evidence of cases whose hold has passed (a protecting case would have stopped us):
            # the case keeps its signed report; the audit event keeps the pins.
            evidence = list(
                Evidence.objects.filter(trace__run_id=run_id).values(
                    "pk", "case_id", "trace_id", "pins"
                )
            )
            Evidence.objects.filter(pk__in=[e["pk"] for e in evidence]).delete()
            trace_ids = list(Trace.objects.filter(run_id=run_id).values_list("pk", flat=True))
            for batch in _chunks(trace_ids):
                TraceFeature.objects.filter(trace_id__in=batch).delete()
                Trace.objects.filter(pk__in=batch).delete()
            for name in files:  # before the audit event: see the module's docstring
                delete_file(name)
            remove_empty_folder(run.artifact_prefix)
            job_id = run.job_id
            self.audit(
                "retention.purge",
                run,
                {
                    "kind": "run",
                    "manifest_sha256": run.manifest_sha256,
                    "pins": run.pins,
                    "profile": run.profile.code,
                    "expires_at": run.expires_at,
                    "traces": len(trace_ids),
                    "files": len(files),
                    "bytes": size,
                    "evidence_released": evidence,
                },
            )
            run.delete()
            Job.objects.filter(pk=job_id).delete()
        return Removed({"runs": 1, "traces": len(trace_ids), "files": len(files)}, size)

    def purge_prompt_set(self, prompt_set_id: int) -> Removed | None:
        with transaction.atomic():
            prompt_set = PromptSet.objects.select_for_update().filter(pk=prompt_set_id).first()
            if prompt_set is None or prompt_set.runs.exists():
                return None
            if not prompt_set_candidates(self.as_of).filter(pk=prompt_set_id).exists():
                return None
            job = Job.objects.filter(prompt_set=prompt_set).first()
            upload = str(job.params.get("upload_path", "")) if job is not None else ""
            files = [upload] if exists(upload) else []
            size = sum(stored_size(name) for name in files)
            prompt_ids = list(prompt_set.prompts.values_list("pk", flat=True))
            for batch in _chunks(prompt_ids):
                Prompt.objects.filter(pk__in=batch).delete()
            for name in files:  # before the audit event: see the module's docstring
                delete_file(name)
            self.audit(
                "retention.purge",
                prompt_set,
                {
                    "kind": "prompt_set",
                    "source_sha256": prompt_set.source_sha256,
                    "profile": prompt_set.profile.code,
                    "expires_at": prompt_set.expires_at,
                    "prompts": len(prompt_ids),
                    "files": len(files),
                    "bytes": size,
                },
            )
            prompt_set.delete()
            if job is not None:
                job.delete()
        return Removed({"prompt_sets": 1, "prompts": len(prompt_ids), "files": len(files)}, size)

    def purge_export(self, export_id: int) -> Removed | None:
        with transaction.atomic():
            export = Export.objects.select_for_update().filter(pk=export_id).first()
            if export is None or not export_candidates(self.as_of).filter(pk=export_id).exists():
                return None
            files = [export.artifact] if export.artifact else []
            size = sum(stored_size(name) for name in files)
            for name in files:  # before the audit event: see the module's docstring
                delete_file(name)
            self.audit(
                "retention.purge",
                export,
                {
                    "kind": "export",
                    "sha256": export.sha256,
                    "profile": export.profile.code,
                    "target": f"{export.kind} {export.target_id}",
                    "expires_at": export.expires_at,
                    "files": len(files),
                    "bytes": size,
                },
            )
            export.delete()
        return Removed({"exports": 1, "files": len(files)}, size)


def retention_purge(
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    trigger: str = "command",
    actor: Actor | None = None,
) -> PurgeRun:
    """Purge what has expired at ``as_of`` (default: now) and is not protected; returns the
    recorded pass. ``actor``: who asked (default: the worker or command of ``trigger``).
    ``dry_run``: count what would go and delete nothing. A failure marks the pass failed (with
    why) and re-raises; what was purged before it stays purged."""
    as_of = as_of or timezone.now()
    record = PurgeRun.objects.create(
        as_of=as_of,
        dry_run=dry_run,
        trigger=trigger,
        triggered_by=actor.user if actor is not None else None,
        counts=dict.fromkeys(COUNT_KEYS, 0),
    )
    purge = _Pass(record, actor or Actor(user=None, via=VIA.get(trigger, "worker")))
    try:
        if dry_run:
            preview = purge_preview(as_of, sizes=True)
            counts = dict.fromkeys(COUNT_KEYS, 0)
            for item in preview:
                counts[item.kind] += 1
                counts["files"] += item.files
            record.counts = counts
            record.bytes_freed = sum(item.bytes for item in preview)
        else:
            purge.drain(lambda: original_candidates(as_of), purge.purge_original)
            purge.drain(lambda: run_candidates(as_of), purge.purge_run)
            purge.drain(lambda: prompt_set_candidates(as_of), purge.purge_prompt_set)
            purge.drain(lambda: export_candidates(as_of), purge.purge_export)
        record.state = PurgeRun.State.SUCCEEDED
    except Exception as exc:
        record.state = PurgeRun.State.FAILED
        record.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.exception("purge %s failed", record.pk)
        raise
    finally:
        record.finished_at = timezone.now()
        record.save(update_fields=["counts", "bytes_freed", "state", "error", "finished_at"])
        log.info(
            "purge %s (%s, as of %s): %s, %s bytes",
            record.pk,
            "dry run" if dry_run else record.trigger,
            as_of.isoformat(),
            record.counts,
            record.bytes_freed,
        )
    return record


def purge_preview(as_of: datetime | None = None, *, sizes: bool = False) -> list[PreviewItem]:
    """What a purge at ``as_of`` would delete, item by item (``sizes``: with the files and bytes
    each holds in storage, which lists storage once per item)."""
    candidates = purge_candidates(as_of)
    items: list[PreviewItem] = []
    for prompt_set in candidates.originals:
        path = str(prompt_set.import_job.params["upload_path"]) if prompt_set.import_job else ""
        size = stored_size(path) if sizes and path else 0
        items.append(
            PreviewItem("originals", prompt_set.pk, f"original upload of {prompt_set}", None)
        )
        items[-1].files, items[-1].bytes = (1 if size else 0), size
    for run in candidates.runs:
        files = storage_files(run.artifact_prefix) if sizes else []
        items.append(
            PreviewItem(
                "runs",
                run.pk,
                str(run),
                run.expires_at,
                len(files),
                sum(stored_size(name) for name in files),
            )
        )
    for prompt_set in candidates.prompt_sets:
        items.append(
            PreviewItem("prompt_sets", prompt_set.pk, str(prompt_set), prompt_set.expires_at)
        )
    for export in candidates.exports:
        size = stored_size(export.artifact) if sizes and export.artifact else 0
        items.append(
            PreviewItem("exports", export.pk, str(export), export.expires_at, int(bool(size)), size)
        )
    return items


def purge_request(*, actor: Actor) -> Job:
    """Queue a purge now (the admin page's button): a job on the default queue, audited."""
    with transaction.atomic():
        job = job_create(
            kind=JobKind.PURGE, title="Retention purge (on demand)", created_by=actor.user
        )
        audit_record("retention.purge_request", actor=actor, obj=job)
        job_enqueue(job, "governance.tasks.retention_purge_job_task")
    return job


def purge_execute(job_id: str) -> PurgeRun | None:
    """Run the purge an admin asked for (the task's body), reporting to its job."""
    job = Job.objects.select_related("created_by").get(pk=job_id)
    if job.finished:
        return None
    with job_running(job_id):
        record = retention_purge(trigger="web", actor=Actor.worker(job.created_by))
        job_succeed(
            job_id,
            result={"purge_run": record.pk, "counts": record.counts, "bytes": record.bytes_freed},
            note=", ".join(f"{value} {key}" for key, value in record.counts.items() if value)
            or "nothing had expired",
        )
        return record
    return None
