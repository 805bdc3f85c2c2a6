"""Analysis runs: starting one, and executing it chunk by chunk in an ``analysis`` worker.

Each chunk's arrays are stored first; then its traces, its index rows and the run's counters are
written in one transaction. A worker killed mid-chunk leaves at most an orphan chunk file, which
the retried task overwrites, so a resumed run has every trace exactly once.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.jobs.services import (
    JobError,
    job_create,
    job_enqueue,
    job_fail,
    job_running,
    job_start,
)
from scopeweb.retention.services import expiry_for
from traces.models import AnalysisRun, PromptSet, SaeRecord, Trace
from traces.services.run_execution import pass_execute
from traces.services.run_plans import pass_check


def run_start(
    *,
    actor: Actor,
    prompt_set: PromptSet,
    sae: SaeRecord | None = None,
    saes: Sequence[SaeRecord] = (),
    top_k: int = 32,
    capture_limit: int | None = None,
    dtype: str = "auto",
    generate_tokens: int = 0,
    seed: int = 0,
    chunk_prompts: int = 32,
    reproduces: AnalysisRun | None = None,
    checkpoint: str = "",
    queue: bool = True,
) -> AnalysisRun:
    """Create a run per SAE (``sae`` or ``saes``) with its job, and queue the first one's job on
    the ``analysis`` queue once committed. With several SAEs the first run leads: its worker
    computes every run of the pass from one forward pass per batch (``run_execute``); each run
    keeps its own bundle, traces and index, as a single-SAE run of that SAE would."""
    chosen = list(saes) or ([sae] if sae is not None else [])
    pass_check(chosen)
    with transaction.atomic():
        leader: AnalysisRun | None = None
        for record in chosen:
            job = job_create(
                kind=JobKind.ANALYSIS,
                title=f"Analyse {prompt_set.name!r} with {record.name}",
                created_by=actor.user,
                progress_total=prompt_set.prompt_count,
            )
            run = AnalysisRun.objects.create(
                prompt_set=prompt_set,
                sae=record,
                profile=prompt_set.profile,
                created_by=actor.user,
                job=job,
                top_k=top_k,
                capture_limit=capture_limit or prompt_set.profile.capture_limit,
                dtype=dtype,
                generate_tokens=generate_tokens,
                seed=seed,
                chunk_prompts=chunk_prompts,
                chunks_total=math.ceil(prompt_set.prompt_count / chunk_prompts),
                reproduces=reproduces,
                pass_leader=leader,
                checkpoint=checkpoint,
                expires_at=expiry_for(prompt_set.profile),
            )
            audit_record(
                "run.reproduce" if reproduces is not None else "run.start",
                actor=actor,
                obj=run,
                after=run_spec(run),
            )
            leader = leader or run
        assert leader is not None
        if queue:
            job_enqueue(leader.job, "traces.tasks.analysis_run_task")
    return leader


def run_pass(run: AnalysisRun) -> list[AnalysisRun]:
    """The runs computed in ``run``'s forward pass, its leader first (just ``run`` when alone)."""
    leader_id = run.leader_id
    found = AnalysisRun.objects.filter(Q(pk=leader_id) | Q(pass_leader_id=leader_id))
    return list(found.select_related("sae", "prompt_set", "profile").order_by("pk"))


def run_spec(run: AnalysisRun) -> dict[str, Any]:
    """What a run was asked to do: its inputs and settings, as the audit log records them."""
    return {
        "prompt_set": run.prompt_set_id,
        "sae": run.sae.name,
        "profile": run.profile.code,
        "top_k": run.top_k,
        "capture_limit": run.capture_limit,
        "dtype": run.dtype,
        "generate_tokens": run.generate_tokens,
        "seed": run.seed,
        "reproduces": run.reproduces_id,
        "pass_leader": run.pass_leader_id,
        "checkpoint": run.checkpoint,
    }


def run_reproduce(run: AnalysisRun, *, actor: Actor, queue: bool = True) -> AnalysisRun:
    """Rerun a run's exact spec as a new run; compare them with ``run_reproduction_check``."""
    return run_start(
        actor=actor,
        prompt_set=run.prompt_set,
        sae=run.sae,
        top_k=run.top_k,
        capture_limit=run.capture_limit,
        dtype=run.dtype,
        generate_tokens=run.generate_tokens,
        seed=run.seed,
        chunk_prompts=run.chunk_prompts,
        checkpoint=run.checkpoint,
        reproduces=run,
        queue=queue,
    )


def run_reproduction_check(run: AnalysisRun) -> dict[str, Any] | None:
    """For a finished reproduction: how many traces have the original's hashes."""
    original = run.reproduces
    if original is None:
        return None
    mine = dict(Trace.objects.filter(run=run).values_list("prompt_id", "arrays_sha256"))
    theirs = dict(Trace.objects.filter(run=original).values_list("prompt_id", "arrays_sha256"))
    differing = sorted(p for p in theirs if mine.get(p) != theirs[p])
    return {
        "original": original.pk,
        "traces": len(theirs),
        "identical": len(theirs) - len(differing),
        "differing_prompt_ids": differing[:50],
        "same_device": run.device_kind == original.device_kind,
        "same_pins": run.pins == original.pins,
    }


@transaction.atomic
def run_cancel(run: AnalysisRun, *, actor: Actor) -> None:
    """Cancel ``run`` and every run of its forward pass (they stop together)."""
    runs = run_pass(run)
    AnalysisRun.objects.filter(pk__in=[r.pk for r in runs]).update(cancel_requested=True)
    before_start = Job.objects.filter(
        pk__in=[r.job_id for r in runs], state=JobState.QUEUED
    ).update(state=JobState.CANCELLED, progress_note="cancelled before it started",
             finished_at=timezone.now())  # fmt: skip
    audit_record(
        "run.cancel",
        actor=actor,
        obj=run,
        detail={"before_start": bool(before_start), "runs": [r.pk for r in runs]},
    )


def run_execute(job_id: uuid.UUID | str) -> AnalysisRun | None:
    """Execute (or resume) the run behind a job and every run of its pass. Called by the
    analysis task with the leader's job; a member's job is driven from here."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        return None
    run = AnalysisRun.objects.select_related("sae", "prompt_set").get(job=job)
    if run.pass_leader_id is not None:  # computed by its leader's worker
        return None
    runs = run_pass(run)
    members = [member.job_id for member in runs[1:]]
    with job_running(job_id):
        for member in members:
            job_start(member)
        try:
            if pass_execute(job_id, runs) == "cancelled":
                return run
        except JobError as exc:
            for member in members:
                job_fail(member, message=exc.message, details=exc.details)
            raise
    return run
