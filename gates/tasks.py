"""Gate tasks: a gate run on the ``analysis`` queue, where the model is."""

from __future__ import annotations

from django.conf import settings

from gates.services.execution import gate_run_execute
from scopeweb.jobs.tasks import JobTask, job_task


@job_task(max_retries=3, soft_time_limit=6 * 3600, time_limit=settings.LONGEST_TASK_SECONDS)
def gate_run_task(self: JobTask, job_id: str) -> None:
    gate_run_execute(job_id)
