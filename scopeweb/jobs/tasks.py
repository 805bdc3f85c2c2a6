"""The base of every job task, the options they share, and the stale-job reaper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from scopeweb.jobs.models import Job
from scopeweb.jobs.services import describe_unexpected, job_fail, jobs_reap_stale
from scopeweb.storage import delete_file

log = logging.getLogger(__name__)
TaskFunction = TypeVar("TaskFunction", bound=Callable[..., Any])

# Retried on database hiccups and acknowledged only when done, so a worker that dies mid-task
# leaves the message for another worker. Every task of the project is written to be retried:
# runs resume from their last committed chunk, builds replace what a partial attempt stored,
# the purge finishes item by item what an earlier pass began.
RETRIED: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
}


class JobTask(Task):  # type: ignore[misc]  # celery ships no type information
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
                delete_file(job.params["upload_path"])
        except Exception:
            log.exception("cleanup after failed job %s", job_id)


def retried_task(
    *, max_retries: int, soft_time_limit: int, time_limit: int, **options: Any
) -> Callable[[TaskFunction], TaskFunction]:
    """``shared_task`` with ``RETRIED`` and the limits every task must declare."""
    decorate: Callable[[TaskFunction], TaskFunction] = shared_task(
        max_retries=max_retries,
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
        **RETRIED,
        **options,
    )
    return decorate


def job_task(
    *, max_retries: int, soft_time_limit: int, time_limit: int, base: type[JobTask] = JobTask
) -> Callable[[TaskFunction], TaskFunction]:
    """A retried task bound to a ``JobTask`` base, whose first argument is a Job id."""
    return retried_task(
        max_retries=max_retries,
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
        base=base,
        bind=True,
    )


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)  # type: ignore[misc]
def jobs_reap_stale_task() -> int:
    return jobs_reap_stale()
