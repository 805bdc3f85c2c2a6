"""Report tasks: doors that take ids, load rows and call a service (on the ``default`` queue)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from scopeweb.jobs.tasks import JobTask

# Retried on database hiccups and acknowledged only when done, so a worker that dies mid-report
# leaves the message for another worker. Signing failures are not retried: they fail the job
# with their reason (see ``report_execute``).
_JOB_TASK: dict[str, Any] = {
    "base": JobTask,
    "bind": True,
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
}


@shared_task(**_JOB_TASK, max_retries=3, soft_time_limit=10 * 60, time_limit=12 * 60)
def case_report_task(self: JobTask, job_id: str) -> None:
    from reports.services_reports import report_execute

    report_execute(job_id)
