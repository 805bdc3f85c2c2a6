"""A job task's message that keeps killing its worker is given up after MAX_DELIVERIES: each
delivery is counted on the job (``job_delivered``) before the task runs (``JobTask``)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from celery.exceptions import Ignore

from governance.models import PurgeRun
from governance.tasks import retention_purge_job_task
from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.jobs.services import job_create, job_delivered
from scopeweb.jobs.tasks import JobTask

pytestmark = pytest.mark.django_db


def _job(**fields: Any) -> Job:
    job = job_create(kind=JobKind.PURGE, title="purge", created_by=None)
    Job.objects.filter(pk=job.pk).update(**fields)
    return Job.objects.get(pk=job.pk)


def test_the_same_message_counts_up_and_a_new_message_or_retry_counts_from_one() -> None:
    job = _job()
    assert [job_delivered(job.pk, "task-1:0") for _ in range(3)] == [1, 2, 3]
    assert job_delivered(job.pk, "task-1:1") == 1  # Celery's retry: a new message
    assert job_delivered(job.pk, "task-2:0") == 1  # the job queued again
    assert job_delivered(job.pk, "task-2:0") == 2
    job.refresh_from_db()
    assert (job.deliveries, job.delivery_key) == (2, "task-2:0")


def _deliver(task: JobTask, job: Job, task_id: str = "task-1", retries: int = 0) -> None:
    """What the worker's tracer does before running a task: the request, then before_start."""
    cast(Any, task).push_request(id=task_id, retries=retries, args=[str(job.pk)])
    try:
        task.before_start(task_id, (str(job.pk),), {})
    finally:
        task.pop_request()


def test_the_delivery_past_the_limit_fails_the_job_with_the_reason_and_is_not_run(
    settings: Any,
) -> None:
    settings.MAX_DELIVERIES = 3
    job = _job(state=JobState.RUNNING)
    for _ in range(3):
        _deliver(retention_purge_job_task, job)
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.deliveries == 3
    with pytest.raises(Ignore):  # acknowledged without running
        _deliver(retention_purge_job_task, job)
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.finished_at is not None
    assert job.error.startswith("The worker died 3 times while running this job (killed, out")


def test_a_retry_after_a_database_error_is_not_taken_for_a_dying_worker(settings: Any) -> None:
    settings.MAX_DELIVERIES = 1
    job = _job(state=JobState.RUNNING)
    for retries in range(4):
        _deliver(retention_purge_job_task, job, retries=retries)
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.deliveries == 1


def test_a_finished_job_is_left_as_it_is_when_its_message_comes_once_too_often(
    settings: Any,
) -> None:
    """A worker that died after the job succeeded, before acknowledging: what it did stands."""
    settings.MAX_DELIVERIES = 1
    job = _job(state=JobState.SUCCEEDED, deliveries=1, delivery_key="task-1:0")
    with pytest.raises(Ignore):
        _deliver(retention_purge_job_task, job)
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.error == ""


def test_through_celery_the_delivery_past_the_limit_never_runs_the_task_body(
    settings: Any,
) -> None:
    """``apply`` runs the worker's tracer in this process: before_start, then the body."""
    settings.MAX_DELIVERIES = 2
    job = _job(state=JobState.RUNNING, deliveries=2, delivery_key="purge-1:0")
    result = retention_purge_job_task.apply(args=(str(job.pk),), task_id="purge-1")
    assert str(result.state) == "IGNORED"
    assert not PurgeRun.objects.exists()  # the purge never ran
    job.refresh_from_db()
    assert job.state == JobState.FAILED and "worker died 2 times" in job.error

    fresh = _job()
    retention_purge_job_task.apply(args=(str(fresh.pk),), task_id="purge-2")
    fresh.refresh_from_db()
    assert fresh.state == JobState.SUCCEEDED and fresh.deliveries == 1
    assert PurgeRun.objects.count() == 1
