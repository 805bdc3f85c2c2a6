"""Traces tasks: doors that take a job id, load rows and call a service. Imports and pasted
texts run on ``default``, analyses and feature statistics on ``analysis`` (where the model is),
ingest batches on ``ingest`` (also with a model; scaled apart from analyses)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready
from django.conf import settings

from scopeweb.jobs.models import Job
from scopeweb.jobs.services import JobError
from scopeweb.jobs.tasks import JobTask, job_task, retried_task
from traces.services.feature_stats import feature_stats_execute
from traces.services.ingest import (
    ingest_fail,
    ingest_process,
    ingest_warm,
    stream_runs_close,
)
from traces.services.manifests import WARM_TASK
from traces.services.prompt_sets import prompt_set_import
from traces.services.runs import run_execute
from traces.services.text_analysis import text_analysis_execute, text_analysis_state

log = logging.getLogger(__name__)


@job_task(max_retries=3, soft_time_limit=30 * 60, time_limit=35 * 60)
def prompt_set_import_task(self: JobTask, job_id: str) -> None:
    prompt_set_import(job_id)


@job_task(max_retries=5, soft_time_limit=6 * 3600, time_limit=settings.LONGEST_TASK_SECONDS)
def analysis_run_task(self: JobTask, job_id: str) -> None:
    run_execute(job_id)


class TextAnalysisTask(JobTask):
    """Its argument is the import's job; once the import made the run, a failure belongs to
    the run's job, and the import (which succeeded, keeping its original) is left alone."""

    def failing_job(self, job_id: str) -> Job | None:
        job = Job.objects.filter(pk=job_id).first()
        return text_analysis_state(job)[0] if job is not None else None


@job_task(max_retries=3, soft_time_limit=30 * 60, time_limit=35 * 60, base=TextAnalysisTask)
def analysis_text_task(self: TextAnalysisTask, job_id: str) -> None:
    """A pasted text: import it, then analyse it (the analysis queue, where the model is)."""
    text_analysis_execute(job_id)


@job_task(max_retries=2, soft_time_limit=60 * 60, time_limit=60 * 60 + 300)
def analysis_feature_stats_task(self: JobTask, job_id: str) -> None:
    feature_stats_execute(job_id)


@retried_task(max_retries=5, soft_time_limit=30 * 60, time_limit=35 * 60)
def ingest_batch_task(batch_id: str) -> None:
    """An ingest batch into its day's stream runs (the ``ingest`` queue, where a model is)."""
    try:
        ingest_process(batch_id)
    except JobError as exc:  # what cannot succeed on a retry: the model, the SAE, the file
        ingest_fail(batch_id, str(exc))


@retried_task(max_retries=3, soft_time_limit=30 * 60, time_limit=35 * 60)
def stream_runs_close_task() -> int:
    """Beat, hourly: close the stream runs of UTC days that are over."""
    return stream_runs_close()


@retried_task(max_retries=1, soft_time_limit=30 * 60, time_limit=35 * 60)
def ingest_warm_task() -> list[str]:
    """After a manifest is saved, or as a worker starts: the ingest worker that takes it loads
    the manifests' models and SAEs ahead of requests."""
    warmed = ingest_warm()
    for line in warmed:
        log.info("ingest worker warmed up: %s", line)
    return warmed


@worker_ready.connect
def _warm_ingest_worker(sender: Any = None, **_: Any) -> None:
    """A worker that takes the ``ingest`` queue asks for a warm-up as it starts: the message
    goes to the queue, so a pool process (where batches run, not this main process) loads the
    manifests' models and SAEs before the first batch."""
    names = {queue.name for queue in getattr(getattr(sender, "task_consumer", None), "queues", [])}
    if "ingest" in names:
        sender.app.send_task(WARM_TASK)
