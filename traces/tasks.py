"""Traces tasks: doors that take a job id, load rows and call a service. Imports and pasted
texts run on ``default``, analyses and feature statistics on ``analysis`` (where the model is)."""

from __future__ import annotations

from scopeweb.jobs.tasks import JobTask, job_task
from traces.services.feature_stats import feature_stats_execute
from traces.services.prompt_sets import prompt_set_import
from traces.services.runs import run_execute
from traces.services.text_analysis import text_analysis_execute


@job_task(max_retries=3, soft_time_limit=30 * 60, time_limit=35 * 60)
def prompt_set_import_task(self: JobTask, job_id: str) -> None:
    prompt_set_import(job_id)


@job_task(max_retries=5, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def analysis_run_task(self: JobTask, job_id: str) -> None:
    run_execute(job_id)


@job_task(max_retries=3, soft_time_limit=30 * 60, time_limit=35 * 60)
def analysis_text_task(self: JobTask, job_id: str) -> None:
    """A pasted text: import it, then analyse it (the analysis queue, where the model is)."""
    text_analysis_execute(job_id)


@job_task(max_retries=2, soft_time_limit=60 * 60, time_limit=60 * 60 + 300)
def analysis_feature_stats_task(self: JobTask, job_id: str) -> None:
    feature_stats_execute(job_id)
