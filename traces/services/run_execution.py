"""Executing a run's forward pass, chunk by chunk, in an ``analysis`` worker.

Each chunk's files are stored first, under names of the attempt's own; then its traces, its
index rows and the run's counters are written in one transaction per run; only once that
commit holds are the files published under their bundle names. So a chunk committed once is
never recomputed nor its files rewritten (a redelivered task resumes after it, and an attempt
that loses the race to commit a chunk discards its files), and a worker killed mid-chunk
leaves at most pending files, which its redelivery writes anew and the finished run removes.
A kill between a chunk's commit and its publishing is finished on resume: the pending files
that hold the committed traces' hashes are published. The runs of one pass (several SAEs of
one model) share each batch's forward pass; a run that is ahead (committed before a kill) is
skipped for the chunks it has.
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

from scopeweb.jobs.models import Job, JobState
from scopeweb.jobs.services import JobError, job_progress, job_succeed
from traces.bundle.chunks import (
    chunk_publish_recovered,
    discard_chunk,
    pending_chunks_remove,
    publish_chunk,
    write_pending_chunk,
)
from traces.bundle.manifest import chunk_digests, manifest_build, manifest_write
from traces.models import AnalysisRun, SaeRecord, Trace, TraceFeature
from traces.services.originals import (
    OriginalUnavailable,
    prompts_for_analysis,
    run_token_redaction,
)
from traces.services.saes import sae_folder, sae_record_target_mean

if TYPE_CHECKING:
    from scopeweb_tracer.sae import LoadedSae
    from traces.engine.analyze import TokenRedaction
    from traces.engine.model import LoadedModel

log = logging.getLogger(__name__)
INDEX_BATCH = 5000
FVU_DEFINITION = (
    "Σ‖y − ŷ‖² / Σ‖y − μ‖² over tokens (BOS excluded), μ the SAE's dataset-level mean "
    "recorded in the registry, as Gemma Scope 2 and SAELens report FVU"
)


def pass_execute(job_id: uuid.UUID | str, runs: list[AnalysisRun]) -> str:
    """Compute every run of a pass (its leader first); "cancelled" or "finished"."""
    from traces.engine import runtime
    from traces.engine.analyze import analyze_chunk_multi

    run = runs[0]
    try:  # the original texts (UK, FR: from the kept upload), before the slow model load
        prompts = prompts_for_analysis(run.prompt_set)
    except OriginalUnavailable as exc:
        raise JobError(str(exc)) from None
    redaction = run_token_redaction(run.profile)
    dtype = runtime.default_dtype() if run.dtype == AnalysisRun.DType.AUTO else run.dtype
    try:
        loaded = runtime.model_for(run.model_reference, dtype)
    except ValueError as exc:
        raise JobError(f"The model {run.model_reference!r} cannot be loaded: {exc}") from None
    _refuse_what_does_not_fit(run, runs, loaded, dtype)
    loaded_saes = [run_loaded_sae(member, loaded) for member in runs]
    chunks_total = math.ceil(len(prompts) / run.chunk_prompts)
    for member, sae in zip(runs, loaded_saes, strict=True):
        _publish_recovered(member)
        member.dtype = dtype  # auto is pinned on first execution; reruns keep it
        member.device_kind = runtime.device_kind(loaded)
        member.pins = {
            "model_weights": loaded.weights_sha256,
            "tokenizer": loaded.tokenizer_sha256,
            "sae_params": sae.params_sha256,
            "prompt_set": member.prompt_set.source_sha256,
        }
        member.chunks_total = chunks_total
        member.save(update_fields=["dtype", "device_kind", "pins", "chunks_total"])
    for chunk in range(min(member.chunks_done for member in runs), chunks_total):
        if AnalysisRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
            for member in runs:
                _finish_cancelled(member.job_id, member)
            return "cancelled"
        behind = [i for i, member in enumerate(runs) if member.chunks_done == chunk]
        started = time.monotonic()
        part = prompts[chunk * run.chunk_prompts : (chunk + 1) * run.chunk_prompts]
        results = analyze_chunk_multi(
            loaded,
            [loaded_saes[i] for i in behind],
            part,
            top_k=run.top_k,
            capture_limit=run.capture_limit,
            generate_tokens=run.generate_tokens,
            seed=run.seed,
            redaction=redaction,
        )
        seconds = time.monotonic() - started  # each run took the whole pass
        for i, result in zip(behind, results, strict=True):
            chunk_store(runs[i], chunk, result, seconds, stored_codes(redaction))
            runs[i].refresh_from_db()
            _report(runs[i].job_id, runs[i])
    for member in runs:
        run_finish(member.job_id, member)
    return "finished"


def _refuse_what_does_not_fit(
    run: AnalysisRun, runs: list[AnalysisRun], loaded: LoadedModel, dtype: str
) -> None:
    """Record this worker's matmul peak (once per device kind and dtype; the run form's time
    estimates read it) and refuse a pass whose plan needs more memory than this worker has."""
    from traces.engine import peak, runtime
    from traces.run_plan import PlanError
    from traces.services.run_plans import run_plan_for

    peak.peak_for(loaded.device, dtype, runtime.device_kind(loaded))
    free = peak.device_memory_available(loaded.device)
    if free is not None:  # the plan counts the model, which is already loaded here
        free += sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    try:
        plan = run_plan_for(
            prompt_set=run.prompt_set,
            saes=[member.sae for member in runs],
            dtype=dtype,
            top_k=run.top_k,
            capture_limit=run.capture_limit,
            generate_tokens=run.generate_tokens,
            checkpoint=run.checkpoint,
            memory=free,
        )
    except PlanError:
        return  # a shape the planner cannot read; the engine's loaders say what is wrong
    refusal = plan.refusal()
    if refusal:
        raise JobError(refusal)


def run_loaded_sae(run: AnalysisRun, loaded: LoadedModel) -> LoadedSae:
    """The run's SAE, with the dataset-level mean its FVU is centred on."""
    return loaded_sae_with_mean(run.sae, loaded)


def loaded_sae_with_mean(record: SaeRecord, loaded: LoadedModel) -> LoadedSae:
    """The SAE of ``record`` loaded for ``loaded``'s device and dtype, with the dataset-level
    mean its FVU is centred on (measured on the held-out passages and recorded on the registry
    row the first time it is missing)."""
    import torch

    from scopeweb_tracer.sae import SaeError
    from traces.engine import runtime
    from traces.engine.passages import passage_ids
    from traces.engine.quality import target_mean

    try:
        sae = runtime.sae_for(sae_folder(record), loaded)
    except SaeError as exc:
        raise JobError(f"The SAE {record.name} cannot be used: {exc}") from None
    if not record.target_mean:
        ids = passage_ids(loaded)
        mean = target_mean(loaded, sae, ids)
        source = f"held-out passages (traces/engine/passages.jsonl), {sum(map(len, ids))} tokens"
        sae_record_target_mean(record, mean.tolist(), source)
    sae.target_mean = torch.tensor(record.target_mean, dtype=torch.float32)
    return sae


def chunk_store(
    run: AnalysisRun, chunk: int, result: Any, seconds: float, codes: dict[str, int] | None
) -> bool:
    """Store a computed chunk: its files under this attempt's own names, then its rows in one
    transaction, then (committed) its files published under their bundle names; when another
    attempt committed the chunk first, its files are discarded and the published ones stay.
    Whether this attempt committed it."""
    pending = write_pending_chunk(run.artifact_prefix, chunk, result.arrays, codes)
    if _commit_chunk(run, chunk, result, seconds):  # committed once it returns
        publish_chunk(pending)
        return True
    discard_chunk(pending)
    return False


@transaction.atomic
def _commit_chunk(run: AnalysisRun, chunk: int, result: Any, seconds: float) -> bool:
    """Write a computed chunk's rows unless another attempt got here first; whether it did."""
    locked = AnalysisRun.objects.select_for_update().get(pk=run.pk)
    if locked.chunks_done != chunk:
        return False
    chunk_insert(run, chunk, result, seconds)
    return True


def _publish_recovered(run: AnalysisRun) -> None:
    """Publish the files of chunks committed by an attempt killed before it published them."""

    def committed(chunk: int) -> list[tuple[int, int, str]]:
        rows = Trace.objects.filter(run=run, chunk=chunk).order_by("row")
        return list(rows.values_list("row", "tokens", "arrays_sha256"))

    for chunk in chunk_publish_recovered(
        run.artifact_prefix, run.chunks_done, run.top_k, committed
    ):
        log.warning("run %s: published chunk %s, committed by an attempt killed", run.pk, chunk)


def chunk_insert(run: AnalysisRun, chunk: int, result: Any, seconds: float) -> dict[int, Trace]:
    """A computed chunk's traces and index rows, and the run's counters; the caller holds the
    transaction and has checked that the chunk is not there yet. Traces by prompt id."""
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
        sq_err_total=F("sq_err_total") + sum(item.sq_err for item in result.traces),
        sq_dev_total=F("sq_dev_total") + sum(item.sq_dev for item in result.traces),
    )
    return by_prompt


def stored_codes(redaction: TokenRedaction | None) -> dict[str, int] | None:
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
        # pooled over every token of the run, centred on the SAE's recorded mean: the figure
        # Gemma Scope 2 and SAELens report, comparable with the registry's held-out FVU
        "fvu": run.sq_err_total / run.sq_dev_total if run.sq_dev_total else None,
        "fvu_definition": FVU_DEFINITION,
        "mean_resid_norm": stats["resid_norm"],
        "tokens_per_second": run.tokens_done / run.compute_seconds if run.compute_seconds else None,
        "top_features": list(top),
    }


def run_finish(job_id: uuid.UUID | str, run: AnalysisRun) -> None:
    """Write the run's bundle manifest and summary, and succeed its job."""
    files = chunk_digests(run)
    manifest = manifest_build(run, files)
    stored = sum(file.size for parts in files.values() for file in parts.values())
    summary = run_summary(run) | {
        "bytes_stored": stored,
        "bytes_per_token": stored / max(run.tokens_done, 1),
    }
    manifest_sha = manifest_write(run.artifact_prefix, manifest)
    pending_chunks_remove(run.artifact_prefix)  # what killed attempts left unpublished
    AnalysisRun.objects.filter(pk=run.pk).update(summary=summary, manifest_sha256=manifest_sha)
    job_succeed(
        job_id,
        result={"run_id": run.pk, "traces": summary["traces"]},
        note=f"{summary['traces']} traces, {run.tokens_done:,} tokens",
    )
