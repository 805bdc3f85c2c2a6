""" "Which features fire on this text": a pasted text becomes a one-prompt set (through the same
import checks as any upload) and a run with the chosen SAE, both done by one task on the
``analysis`` queue; the page then opens the trace."""

from __future__ import annotations

import io
import json
import uuid

from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job
from scopeweb.jobs.services import job_enqueue
from scopeweb.retention.models import RetentionProfile
from traces.models import AnalysisRun, PromptSet, SaeRecord, Trace
from traces.services.prompt_sets import prompt_set_import, prompt_set_upload
from traces.services.runs import run_execute, run_start


def text_analysis_start(
    *, actor: Actor, sae: SaeRecord, text: str, profile: RetentionProfile, queue: bool = True
) -> Job:
    """Store the text as an upload and queue its import + analysis; returns the import job."""
    data = (json.dumps({"prompt": text}) + "\n").encode()
    with transaction.atomic():
        job = prompt_set_upload(
            actor=actor,
            name=f"Pasted text {timezone.now():%Y-%m-%d %H:%M:%S}",
            description=f"Quick analysis with {sae.name}",
            profile=profile,
            file=io.BytesIO(data),
            filename="pasted-text.jsonl",
            size=len(data),
            file_format="jsonl",
            queue=False,
        )
        job.params = job.params | {"quick_analysis_sae": sae.pk}
        job.save(update_fields=["params"])
        if queue:
            job_enqueue(job, "traces.tasks.analysis_text_task")
    return job


def text_analysis_execute(import_job_id: uuid.UUID | str) -> Trace | None:
    """Import the pasted text, then run the SAE over it in this process. The run is created in
    the import's transaction: an import that succeeded always has its run, whose job then
    carries any failure of the analysis (``text_analysis_state``)."""
    job = Job.objects.get(pk=import_job_id)

    def start_run(prompt_set: PromptSet) -> AnalysisRun:
        return run_start(
            actor=Actor.worker(job.created_by),
            prompt_set=prompt_set,
            sae=SaeRecord.objects.get(pk=job.params["quick_analysis_sae"]),
            queue=False,
        )

    prompt_set = prompt_set_import(import_job_id, then=start_run)
    if prompt_set is None:  # refused: the import job says why
        return None
    run = prompt_set.runs.first() or start_run(prompt_set)  # imported before runs came along
    run_execute(run.job_id)
    return Trace.objects.filter(run=run).first()


def text_analysis_state(import_job: Job) -> tuple[Job, Trace | None]:
    """The job to show (the import's, then the run's) and the trace once there is one. The job
    shown is also the one a failure of the task is recorded on (``traces.tasks``): a failed
    analysis never marks the import that succeeded, nor deletes the original it keeps."""
    prompt_set = PromptSet.objects.filter(import_job=import_job).first()
    run = prompt_set.runs.select_related("job").first() if prompt_set else None
    if run is None:
        return import_job, None
    return run.job, Trace.objects.filter(run=run).first()
