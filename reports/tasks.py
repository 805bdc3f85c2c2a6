"""Report tasks: doors that take ids, load rows and call a service (on the ``default`` queue).

Signing failures are not retried: they fail the job with their reason (``report_execute``)."""

from __future__ import annotations

from reports.services.reports import report_execute
from scopeweb.jobs.tasks import JobTask, job_task


@job_task(max_retries=3, soft_time_limit=10 * 60, time_limit=12 * 60)
def case_report_task(self: JobTask, job_id: str) -> None:
    report_execute(job_id)
