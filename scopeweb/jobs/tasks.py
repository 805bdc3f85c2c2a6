"""The base of every job task, the options they share, and the stale-job reaper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from scopeweb.jobs.models import Job
from scopeweb.jobs.services import describe_unexpected, job_fail, jobs_reap_stale
from scopeweb.storage import delete_file

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
JobFunction = Callable[[Any, str], None]  # (the bound task, the job's id)

# Retried on database hiccups and acknowledged only when done, so a worker that dies mid-task
# leaves the message for another worker. Every task of the project is written to be retried:
# runs resume from their last committed chunk, builds replace what a partial attempt stored,
# the purge finishes item by item what an earlier pass began.
RETRIED: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
}


if TYPE_CHECKING:  # celery-types makes Task generic; celery 5.4 cannot subscript it at run time
    _JobTaskBase = Task[[str], None]
else:
    _JobTaskBase = Task


class JobTask(_JobTaskBase):
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
    *, max_retries: int, soft_time_limit: int, time_limit: int
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``shared_task`` with ``RETRIED`` and the limits every task must declare."""
    decorate: Callable[[Callable[P, R]], Task[P, R]] = shared_task(
        max_retries=max_retries,
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
        **RETRIED,
    )
    return decorate


def job_task(
    *, max_retries: int, soft_time_limit: int, time_limit: int, base: type[JobTask] = JobTask
) -> Callable[[JobFunction], JobTask]:
    """A retried task with a ``JobTask`` base, bound, whose one argument is a Job id."""
    decorate: Callable[[JobFunction], JobTask] = shared_task(
        bind=True,
        base=base,
        max_retries=max_retries,
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
        **RETRIED,
    )
    return decorate


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)
def jobs_reap_stale_task() -> int:
    return jobs_reap_stale()
