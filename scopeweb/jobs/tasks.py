from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.core.files.storage import default_storage

from scopeweb.jobs.models import Job
from scopeweb.jobs.services import describe_unexpected, job_fail, jobs_reap_stale

log = logging.getLogger(__name__)


class JobTask(Task):
    """Base for tasks whose first argument is a Job id: a final failure is written to the job."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id is None:
            return
        job_fail(job_id, message=describe_unexpected(exc))
        try:
            job = Job.objects.get(pk=job_id)
            if job.params.get("upload_path"):
                default_storage.delete(job.params["upload_path"])
        except Exception:
            log.exception("cleanup after failed job %s", job_id)


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)
def jobs_reap_stale_task() -> int:
    return jobs_reap_stale()
