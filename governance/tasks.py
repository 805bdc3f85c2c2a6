"""Governance tasks: doors that take ids, load rows and call a service (``default`` queue).

- the purge: beat's daily pass and an admin's "purge now" (a job the UI shows). The purge is
  idempotent item by item: a retry (or a second worker) finishes what one began;
- an export's build: a rebuilt zip replaces a partial one.
"""

from __future__ import annotations

import logging
from typing import Any

from governance.models import Export
from governance.services.exports import export_execute, export_fail
from governance.services.purge import purge_execute, retention_purge
from governance.services.storage import storage_cost_check
from scopeweb.accounts.actor import Actor
from scopeweb.jobs.services import describe_unexpected
from scopeweb.jobs.tasks import JobTask, job_task, retried_task

log = logging.getLogger(__name__)
PURGE_HOURS = 2  # the soft limit; the hard one is five minutes later


@retried_task(
    max_retries=3, soft_time_limit=PURGE_HOURS * 3600, time_limit=PURGE_HOURS * 3600 + 300
)
def retention_purge_scheduled_task() -> int:
    record = retention_purge(trigger="beat")
    storage_cost_check()
    return record.pk


@job_task(max_retries=3, soft_time_limit=PURGE_HOURS * 3600, time_limit=PURGE_HOURS * 3600 + 300)
def retention_purge_job_task(self: JobTask, job_id: str) -> None:
    purge_execute(job_id)


class ExportTask(JobTask):
    """A job task whose final failure also marks its export failed (never left "building")."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        job_id = args[0] if args else kwargs.get("job_id")
        try:
            export = Export.objects.filter(job_id=job_id).select_related("job").first()
            if export is not None:
                user = export.job.created_by if export.job is not None else None
                export_fail(export.pk, describe_unexpected(exc), actor=Actor.worker(user))
        except Exception:  # the handler never breaks the task
            log.exception("could not mark the export of job %s failed", job_id)


@job_task(max_retries=3, soft_time_limit=30 * 60, time_limit=35 * 60, base=ExportTask)
def export_build_task(self: ExportTask, job_id: str) -> None:
    export_execute(job_id)
