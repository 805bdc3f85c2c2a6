"""Doors to the purge: beat's daily pass and an admin's "purge now" (a job the UI shows)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from scopeweb.jobs.models import Job
from scopeweb.jobs.services import job_running, job_succeed
from scopeweb.jobs.tasks import JobTask

# The purge is idempotent item by item: a retry (or a second worker) finishes what one began.
_PURGE_TASK: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "max_retries": 3,
    "soft_time_limit": 2 * 3600,
    "time_limit": 2 * 3600 + 300,
}


@shared_task(**_PURGE_TASK)
def retention_purge_scheduled_task() -> int:
    from scopeweb.retention.purge import retention_purge
    from scopeweb.retention.services_storage import storage_cost_check

    record = retention_purge(trigger="beat")
    storage_cost_check()
    return record.pk


@shared_task(base=JobTask, bind=True, **_PURGE_TASK)
def retention_purge_job_task(self: Any, job_id: str) -> None:
    from scopeweb.retention.purge import retention_purge

    job = Job.objects.select_related("created_by").get(pk=job_id)
    if job.finished:
        return
    with job_running(job_id):
        record = retention_purge(trigger="web", user=job.created_by)
        job_succeed(
            job_id,
            result={"purge_run": record.pk, "counts": record.counts, "bytes": record.bytes_freed},
            note=", ".join(f"{value} {key}" for key, value in record.counts.items() if value)
            or "nothing had expired",
        )
