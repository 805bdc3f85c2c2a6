"""Analysis runs: starting one, and executing it chunk by chunk in an ``analysis`` worker.

Each chunk's arrays are stored first; then its traces, its index rows and the run's counters are
written in one transaction. A worker killed mid-chunk leaves at most an orphan chunk file, which
the retried task overwrites, so a resumed run has every trace exactly once.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Avg, Count, F, Max
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.jobs.services import (
    JobError,
    job_create,
    job_enqueue,
    job_progress,
    job_running,
    job_succeed,
)
from scopeweb.retention.services import expiry_for
from traces.bundle.chunks import write_chunk
from traces.bundle.manifest import chunk_digests, manifest_build, manifest_write
from traces.models import AnalysisRun, PromptSet, SaeRecord, Trace, TraceFeature
from traces.services.originals import (
    OriginalUnavailable,
    prompts_for_analysis,
    run_token_redaction,
)
from traces.services.saes import sae_folder

if TYPE_CHECKING:
    from traces.engine.analyze import TokenRedaction

log = logging.getLogger(__name__)
INDEX_BATCH = 5000


def run_start(
    *,
    actor: Actor,
    prompt_set: PromptSet,
    sae: SaeRecord,
    top_k: int = 32,
    capture_limit: int | None = None,
    dtype: str = "auto",
    generate_tokens: int = 0,
    seed: int = 0,
    chunk_prompts: int = 32,
    reproduces: AnalysisRun | None = None,
    queue: bool = True,
) -> AnalysisRun:
    """Create a run and its job, and queue it on the ``analysis`` queue once committed."""
    with transaction.atomic():
        job = job_create(
            kind=JobKind.ANALYSIS,
            title=f"Analyse {prompt_set.name!r} with {sae.name}",
            created_by=actor.user,
            progress_total=prompt_set.prompt_count,
        )
        run = AnalysisRun.objects.create(
            prompt_set=prompt_set,
            sae=sae,
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
            expires_at=expiry_for(prompt_set.profile),
        )
        audit_record(
            "run.reproduce" if reproduces is not None else "run.start",
            actor=actor,
            obj=run,
            after=run_spec(run),
        )
        if queue:
            job_enqueue(job, "traces.tasks.analysis_run_task")
    return run


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
    AnalysisRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    before_start = Job.objects.filter(pk=run.job_id, state=JobState.QUEUED).update(
        state=JobState.CANCELLED, progress_note="cancelled before it started",
        finished_at=timezone.now(),
    )  # fmt: skip
    audit_record(
        "run.cancel",
        actor=actor,
        obj=run,
        detail={"before_start": bool(before_start)},
    )


def run_execute(job_id: uuid.UUID | str) -> AnalysisRun | None:
    """Execute (or resume) the run behind a job. Called by the analysis task."""
    from traces.engine import runtime
    from traces.engine.analyze import analyze_chunk
    from traces.engine.sae import SaeError

    job = Job.objects.get(pk=job_id)
    if job.finished:
        return None
    run = AnalysisRun.objects.select_related("sae", "prompt_set").get(job=job)
    with job_running(job_id):
        try:  # the original texts (UK, FR: from the kept upload), before the slow model load
            prompts = prompts_for_analysis(run.prompt_set)
        except OriginalUnavailable as exc:
            raise JobError(str(exc)) from None
        redaction = run_token_redaction(run.profile)
        if run.dtype == AnalysisRun.DType.AUTO:  # pinned on first execution; reruns keep it
            run.dtype = runtime.default_dtype()
            run.save(update_fields=["dtype"])
        try:
            loaded = runtime.model_for(run.sae.model_name, run.dtype)
        except ValueError as exc:
            raise JobError(f"The model {run.sae.model_name!r} cannot be loaded: {exc}") from None
        try:
            sae = runtime.sae_for(sae_folder(run.sae), loaded)
        except SaeError as exc:
            raise JobError(f"The SAE cannot be used: {exc}") from None
        run.device_kind = runtime.device_kind(loaded)
        run.pins = {
            "model_weights": loaded.weights_sha256,
            "tokenizer": loaded.tokenizer_sha256,
            "sae_params": sae.params_sha256,
            "prompt_set": run.prompt_set.source_sha256,
        }
        run.chunks_total = math.ceil(len(prompts) / run.chunk_prompts)
        run.save(update_fields=["device_kind", "pins", "chunks_total"])
        for chunk in range(run.chunks_done, run.chunks_total):
            if AnalysisRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
                _finish_cancelled(job_id, run)
                return run
            started = time.monotonic()
            part = prompts[chunk * run.chunk_prompts : (chunk + 1) * run.chunk_prompts]
            result = analyze_chunk(
                loaded,
                sae,
                part,
                top_k=run.top_k,
                capture_limit=run.capture_limit,
                generate_tokens=run.generate_tokens,
                seed=run.seed,
                redaction=redaction,
            )
            write_chunk(run.artifact_prefix, chunk, result.arrays, _codes(redaction))
            _commit_chunk(run, chunk, result, time.monotonic() - started)
            run.refresh_from_db()
            _report(job_id, run)
        _finish(job_id, run)
    return run


@transaction.atomic
def _commit_chunk(run: AnalysisRun, chunk: int, result: Any, seconds: float) -> None:
    locked = AnalysisRun.objects.select_for_update().get(pk=run.pk)
    if locked.chunks_done != chunk:  # another attempt got here first
        return
    traces = Trace.objects.bulk_create(
        [
            Trace(
                run=run,
                prompt_id=item.key,
                chunk=chunk,
                row=item.row,
                tokens=item.tokens,
                prompt_tokens=item.prompt_tokens,
                truncated=item.truncated,
                completion=item.completion,
                l0=item.l0,
                fvu=item.fvu,
                resid_norm=item.resid_norm,
                arrays_sha256=item.sha256,
            )
            for item in result.traces
        ]
    )
    by_prompt = {t.prompt_id: t for t in traces}  # SQLite and PostgreSQL return the new pks
    TraceFeature.objects.bulk_create(
        (
            TraceFeature(
                trace=by_prompt[item.key],
                feature=feature,
                max_activation=peak,
                count=count,
                first_position=first,
            )
            for item in result.traces
            for feature, peak, count, first in item.features
        ),
        batch_size=INDEX_BATCH,
    )
    AnalysisRun.objects.filter(pk=run.pk).update(
        chunks_done=F("chunks_done") + 1,
        prompts_done=F("prompts_done") + len(result.traces),
        tokens_done=F("tokens_done") + result.tokens,
        compute_seconds=F("compute_seconds") + seconds,
    )


def _codes(redaction: TokenRedaction | None) -> dict[str, int] | None:
    return redaction.codes if redaction is not None else None


def _report(job_id: uuid.UUID | str, run: AnalysisRun) -> None:
    rate = run.tokens_done / run.compute_seconds if run.compute_seconds else 0.0
    remaining = run.prompt_set.prompt_count - run.prompts_done
    per_prompt = run.compute_seconds / max(run.prompts_done, 1)
    job_progress(
        job_id,
        done=run.prompts_done,
        total=run.prompt_set.prompt_count,
        note=f"{rate:,.0f} tokens/s, about {remaining * per_prompt:,.0f} s left",
    )


def _finish_cancelled(job_id: uuid.UUID | str, run: AnalysisRun) -> None:
    Job.objects.filter(pk=job_id).update(
        state=JobState.CANCELLED,
        progress_note=f"cancelled after {run.prompts_done} prompts",
        finished_at=timezone.now(),
    )


def run_summary(run: AnalysisRun) -> dict[str, Any]:
    traces = Trace.objects.filter(run=run)
    stats = traces.aggregate(l0=Avg("l0"), fvu=Avg("fvu"), resid_norm=Avg("resid_norm"))
    top = (
        TraceFeature.objects.filter(trace__run=run)
        .values("feature")
        .annotate(traces=Count("id"), peak=Max("max_activation"))
        .order_by("-traces")[:20]
    )
    return {
        "traces": traces.count(),
        "tokens": run.tokens_done,
        "mean_l0": stats["l0"],
        "mean_fvu": stats["fvu"],
        "mean_resid_norm": stats["resid_norm"],
        "tokens_per_second": run.tokens_done / run.compute_seconds if run.compute_seconds else None,
        "top_features": list(top),
    }


def _finish(job_id: uuid.UUID | str, run: AnalysisRun) -> None:
    files = chunk_digests(run)
    manifest = manifest_build(run, files)
    stored = sum(file.size for parts in files.values() for file in parts.values())
    summary = run_summary(run) | {
        "bytes_stored": stored,
        "bytes_per_token": stored / max(run.tokens_done, 1),
    }
    manifest_sha = manifest_write(run.artifact_prefix, manifest)
    AnalysisRun.objects.filter(pk=run.pk).update(summary=summary, manifest_sha256=manifest_sha)
    job_succeed(
        job_id,
        result={"run_id": run.pk, "traces": summary["traces"]},
        note=f"{summary['traces']} traces, {run.tokens_done:,} tokens",
    )
