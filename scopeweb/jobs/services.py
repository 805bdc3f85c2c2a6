"""Job lifecycle. Tasks call these; progress updates never break the task that reports them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from scopeweb.jobs.models import Job, JobKind, JobState

log = logging.getLogger(__name__)
MAX_LISTED_PROBLEMS = 1000


class JobError(Exception):
    """A failure to show the job's user: ``message`` in words, ``details`` itemised."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


def job_create(
    *,
    kind: JobKind,
    title: str,
    created_by: User | None,
    params: dict[str, Any] | None = None,
    progress_total: int = 0,
    job_id: uuid.UUID | None = None,
) -> Job:
    """A queued job the UI shows from now on (``job_id``: when its files are named first).

    ``title`` is cut to fit: callers put names and file names in it, of any length."""
    return Job.objects.create(
        id=job_id or uuid.uuid4(),
        kind=kind,
        title=title[: Job.TITLE_MAX],
        created_by=created_by,
        params=params or {},
        progress_total=progress_total,
    )


def job_enqueue(job: Job, task: str) -> None:
    """Send ``task`` (its registered name) for ``job`` once the current transaction commits, so
    a worker never sees a job that was rolled back. By name: a service never imports its app's
    tasks, which import the services they call (``tests/test_layers.py`` checks each name)."""
    job_id = str(job.pk)
    transaction.on_commit(lambda: current_app.send_task(task, args=[job_id]))


def job_start(job_id: uuid.UUID | str) -> Job:
    Job.objects.filter(pk=job_id).update(
        state=JobState.RUNNING,
        started_at=timezone.now(),
        finished_at=None,
        attempts=F("attempts") + 1,
        progress_note="started",
        updated_at=timezone.now(),
    )
    return Job.objects.get(pk=job_id)


def job_delivered(job_id: uuid.UUID | str, message: str) -> int:
    """Count a worker taking the task message ``message`` (its task id and retry number) for
    the job; returns how many times that message has been taken. A new task or a retry is a new
    message and counts from 1; the same message again is a broker's redelivery of a message
    whose worker died before acknowledging it (killed, out of memory)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().only("deliveries", "delivery_key").get(pk=job_id)
        job.deliveries = job.deliveries + 1 if job.delivery_key == message else 1
        job.delivery_key = message
        job.save(update_fields=["deliveries", "delivery_key", "updated_at"])
    return job.deliveries


def worker_died_message(deaths: int) -> str:
    """Why a job whose task kept killing its worker was given up."""
    times = "once" if deaths == 1 else f"{deaths} times"
    return (
        f"The worker died {times} while running this job (killed, out of memory?), so it was "
        "not started again. Ask an admin to read the worker log and the machine's memory use, "
        "then start it again."
    )


def job_progress(job_id: uuid.UUID | str, *, done: int, total: int, note: str = "") -> None:
    try:
        Job.objects.filter(pk=job_id).update(
            progress_done=done, progress_total=total, progress_note=note, updated_at=timezone.now()
        )
    except Exception:  # progress is a courtesy: never let it fail the work
        log.exception("could not record progress of job %s", job_id)


def job_succeed(job_id: uuid.UUID | str, *, result: dict[str, Any], note: str = "done") -> None:
    Job.objects.filter(pk=job_id).update(
        state=JobState.SUCCEEDED,
        result=result,
        progress_note=note,
        error="",
        error_details=[],
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )


def job_fail(
    job_id: uuid.UUID | str, *, message: str, details: list[dict[str, Any]] | None = None
) -> None:
    details = details or []
    try:
        Job.objects.filter(pk=job_id).update(
            state=JobState.FAILED,
            error=message,
            error_details=details[:MAX_LISTED_PROBLEMS],
            progress_note="failed",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    except Exception:
        log.exception("could not record failure of job %s", job_id)


@contextmanager
def job_running(job_id: uuid.UUID | str) -> Iterator[Job]:
    """Mark a job running for the block; a ``JobError`` inside marks it failed with its words.

    Other exceptions propagate so the task can retry; the task's failure handler records them.
    """
    job = job_start(job_id)
    try:
        yield job
    except JobError as exc:
        job_fail(job_id, message=exc.message, details=exc.details)


def describe_unexpected(exc: BaseException) -> str:
    return (
        f"The job stopped on an unexpected error ({type(exc).__name__}: {exc}). "
        "Nothing from it was kept; try again, and if it fails again ask an admin to read the "
        "worker log."
    )


@transaction.atomic
def jobs_reap_stale() -> int:
    """Fail jobs whose worker stopped reporting (killed, or its machine went away). A stream's
    job runs all day whether requests come or not; beat closes it when the day is over."""
    cutoff = timezone.now() - timedelta(minutes=settings.JOB_STALE_MINUTES)
    stale = Job.objects.filter(
        state__in=[JobState.QUEUED, JobState.RUNNING], updated_at__lt=cutoff
    ).exclude(kind=JobKind.STREAM)
    return stale.update(
        state=JobState.FAILED,
        error=(
            f"No worker reported on this job for {settings.JOB_STALE_MINUTES} minutes, so it "
            "was given up. Check that a worker is running, then start it again."
        ),
        progress_note="failed",
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
