"""Export tasks: doors that take ids, load rows and call a service (on the ``default`` queue)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from scopeweb.jobs.services import describe_unexpected
from scopeweb.jobs.tasks import JobTask

log = logging.getLogger(__name__)


class ExportTask(JobTask):
    """A job task whose final failure also marks its export failed (never left "building")."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        job_id = args[0] if args else kwargs.get("job_id")
        try:
            from scopeweb.exports.models import Export
            from scopeweb.exports.services import export_fail

            export = Export.objects.filter(job_id=job_id).select_related("job").first()
            if export is not None:
                user = export.job.created_by if export.job is not None else None
                export_fail(export.pk, describe_unexpected(exc), user=user)
        except Exception:  # the handler never breaks the task
            log.exception("could not mark the export of job %s failed", job_id)


# Retried on database hiccups and acknowledged only when done, so a worker that dies mid-build
# leaves the message for another worker (a rebuilt zip replaces the partial one).
@shared_task(
    base=ExportTask,
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=30 * 60,
    time_limit=35 * 60,
)
def export_build_task(self: ExportTask, job_id: str) -> None:
    from scopeweb.exports.services import export_execute

    export_execute(job_id)
