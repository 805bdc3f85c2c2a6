"""The base of every job task, the options they share, and the stale-job reaper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from celery import Task, shared_task
from celery.exceptions import Ignore
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from scopeweb.jobs.models import Job
from scopeweb.jobs.services import (
    describe_unexpected,
    job_delivered,
    job_fail,
    jobs_reap_stale,
    worker_died_message,
)
from scopeweb.storage import delete_file

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
JobFunction = Callable[[Any, str], None]  # (the bound task, the job's id)

# Retried on database hiccups and acknowledged only when done, so a worker that dies mid-task
# leaves the message for another worker (a job task's message at most MAX_DELIVERIES times:
# ``JobTask.before_start``). Every task of the project is written to be retried:
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


def _job_id(args: Any, kwargs: Any) -> str | None:
    job_id = args[0] if args else kwargs.get("job_id")
    return None if job_id is None else str(job_id)


class JobTask(_JobTaskBase):
    """Base for tasks whose first argument is a Job id: a final failure is written to the job,
    and so is a message that keeps killing its worker."""

    def failing_job(self, job_id: str) -> Job | None:
        """The job a failure of this task is recorded on: its argument's, unless a subclass
        knows better (a task that drives a second job)."""
        return Job.objects.filter(pk=job_id).first()

    def give_up(self, job_id: str, message: str) -> None:
        """Fail the job (unless it already finished: what it did stands) and delete the upload
        of an import that failed. Never raises: a failure handler must not break the task."""
        try:
            job = self.failing_job(job_id)
            if job is None or job.finished:
                return
            job_fail(job.pk, message=message)
            if job.params.get("upload_path"):
                delete_file(job.params["upload_path"])
        except Exception:
            log.exception("could not record the failure of job %s", job_id)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        """Count this delivery of the message; past ``MAX_DELIVERIES`` (the worker died each
        time), fail the job with why and acknowledge the message without running it."""
        job_id = _job_id(args, kwargs)
        if job_id is None:
            return
        try:
            deliveries = job_delivered(job_id, f"{task_id}:{self.request.retries}")
        except (DatabaseError, Job.DoesNotExist):  # the task body meets it and retries
            log.exception("could not count the delivery of job %s", job_id)
            return
        if deliveries > settings.MAX_DELIVERIES:
            log.error("job %s: message %s delivered %d times", job_id, task_id, deliveries)
            self.give_up(job_id, worker_died_message(deliveries - 1))
            raise Ignore()

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = _job_id(args, kwargs)
        if job_id is not None:
            self.give_up(job_id, describe_unexpected(exc))


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
