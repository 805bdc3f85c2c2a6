"""Ingestion of sampled production requests: accept (web), then analyse (``ingest`` worker).

Accepting is stateless and quick: the manifest's sampler decides each request from its trace
id (deterministically, as the tracer decided it), requests seen before are skipped, and the
sampled requests' originals are written to one batch file before one transaction records the
batch and its requests. Only then does the endpoint answer 202, so nothing accepted is lost;
the worker's task is queued when that transaction commits. Above ``INGEST_QUEUE_MAX`` pending
requests the endpoint answers 429 with ``Retry-After``.

A worker on the ``ingest`` queue appends the batch's requests to the day's stream prompt set
(stored redacted where the profile says so, as uploads are), recomputes their activations
teacher-forced (prompt and completion in one forward pass) for every SAE of the manifest, and
commits one chunk per stream run. The batch file is deleted once its traces are committed.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.refusals import Refused
from scopeweb.retention.services import expiry_for
from scopeweb.storage import delete_file, read_bytes, store_new
from scopeweb_tracer.sampling import decide, parse_trace_id
from traces.ingest.models import (
    IngestBatch,
    IngestCount,
    IngestedRequest,
    IngestToken,
    InstrumentationManifest,
)
from traces.ingest.records import IngestRecord
from traces.models import AnalysisRun, PromptSet
from traces.services.manifests import manifest_document
from traces.services.prompt_sets import TOKENIZER_NAME

log = logging.getLogger(__name__)


class IngestBusy(Refused):
    """Too much is waiting for analysis: the caller should retry later."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class IngestReceipt:
    batch: str | None
    received: int
    sampled: int
    not_sampled: int
    duplicates: int
    skipped_spans: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pending_requests() -> int:
    found = IngestBatch.objects.filter(state=IngestBatch.State.PENDING).aggregate(n=Sum("records"))
    return int(found["n"] or 0)


def _original(record: IngestRecord, keep_completion: bool) -> dict[str, Any]:
    """What the batch file keeps of a request. A manifest that keeps no completions keeps
    none here either: the prompt alone is analysed (a tracer's encodings, which cover the
    completion, are dropped and the prompt recomputed)."""
    return {
        "trace_id": record.trace_id,
        "messages": [{"role": m.role, "content": m.content} for m in record.messages],
        "completion": record.completion if keep_completion else "",
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens if keep_completion else None,
        "service": record.service,
        # a tracer's encodings, checked by the worker
        "features": record.extra.get("features") if keep_completion else None,
    }


def ingest_accept(
    *,
    token: IngestToken,
    records: tuple[IngestRecord, ...],
    via: str,
    skipped_spans: int = 0,
) -> IngestReceipt:
    """Sample, deduplicate and durably keep ``records`` for ``token``'s manifest."""
    manifest = token.manifest
    limit = int(getattr(settings, "INGEST_QUEUE_MAX", 20000))
    if _pending_requests() >= limit:
        ingest_count(manifest, "rejected_queue_full", len(records))
        raise IngestBusy(f"{limit} requests are waiting for analysis; retry later.", 30)
    document = manifest_document(manifest)
    now = timezone.now()
    sampled: list[tuple[IngestRecord, float, str]] = []
    for record in records:
        # As the tracer decided: at the request's start, when the record says (window edges)
        moment = record.started_at if record.started_at and record.started_at <= now else now
        decision = decide(document, parse_trace_id(record.trace_id), dict(record.tags), moment)
        if decision.sampled:
            sampled.append((record, decision.rate, decision.reason))
    seen = set(
        IngestedRequest.objects.filter(
            manifest=manifest, otel_trace_id__in=[r.trace_id for r, *_ in sampled]
        ).values_list("otel_trace_id", flat=True)
    )
    fresh, taken = [], set(seen)
    for item in sampled:
        if item[0].trace_id not in taken:
            taken.add(item[0].trace_id)
            fresh.append(item)
    receipt = IngestReceipt(
        batch=None,
        received=len(records),
        sampled=len(fresh),
        not_sampled=len(records) - len(sampled),
        duplicates=len(sampled) - len(fresh),
        skipped_spans=skipped_spans,
    )
    ingest_count(manifest, "not_sampled", receipt.not_sampled)
    ingest_count(manifest, "duplicate", receipt.duplicates)
    if not fresh:
        return receipt
    batch_id = uuid.uuid4()
    kept = [_original(r, manifest.keep_completions) for r, *_ in fresh]
    body = json.dumps(kept, ensure_ascii=False).encode("utf-8")
    path = store_new(f"ingest/{manifest.service}/{now:%Y-%m-%d}/{batch_id}.json", body)
    try:
        with transaction.atomic():
            batch = IngestBatch.objects.create(
                id=batch_id,
                manifest=manifest,
                via=via,
                path=path,
                records=len(fresh),
                bytes=len(body),
            )
            IngestedRequest.objects.bulk_create(
                IngestedRequest(
                    manifest=manifest,
                    batch=batch,
                    otel_trace_id=record.trace_id,
                    position=position,
                    sample_rate=rate,
                    sample_reason=reason[:200],
                    manifest_version=manifest.version,
                    tags=dict(record.tags),
                    model=record.model[:300],
                    input_tokens=record.input_tokens,
                    output_tokens=record.output_tokens if manifest.keep_completions else None,
                    overhead_ms=_overhead(record),
                )
                for position, (record, rate, reason) in enumerate(fresh)
            )
            transaction.on_commit(lambda: _queue(batch_id))
    except IntegrityError:  # another process took one of these trace ids meanwhile
        delete_file(path)
        raise Refused("Some of these trace ids arrived at the same moment; send again.") from None
    except BaseException:
        delete_file(path)
        raise
    return IngestReceipt(**{**asdict(receipt), "batch": str(batch_id)})


def ingest_count(manifest: InstrumentationManifest, kind: str, n: int) -> None:
    """Add ``n`` to today's count of ``kind`` for ``manifest`` (what the database cannot
    otherwise tell /metrics: requests not sampled, duplicates, refusals)."""
    if n <= 0:
        return
    day = timezone.now().astimezone(UTC).date()
    row, _ = IngestCount.objects.get_or_create(manifest=manifest, day=day, kind=kind)
    IngestCount.objects.filter(pk=row.pk).update(count=F("count") + n)


def _overhead(record: IngestRecord) -> float | None:
    value = record.extra.get("overhead_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


INGEST_TASK = "traces.tasks.ingest_batch_task"  # by name: services never import their tasks


def _queue(batch_id: uuid.UUID) -> None:
    current_app.send_task(INGEST_TASK, args=[str(batch_id)])


# --- the worker's side -----------------------------------------------------------------------


def _stream_job(manifest: InstrumentationManifest, day: date) -> Job:
    return Job.objects.create(
        kind=JobKind.STREAM,
        state=JobState.RUNNING,
        title=f"Stream {manifest.service} {day:%Y-%m-%d}",
        params={"stream": manifest.service, "day": day.isoformat()},
        started_at=timezone.now(),
    )


def stream_runs(manifest: InstrumentationManifest, day: date) -> list[AnalysisRun]:
    """The day's stream runs of ``manifest``, one per SAE (made on first use), leader first."""
    saes = sorted(manifest.saes.all(), key=lambda s: s.pk)
    runs = {
        run.sae_id: run
        for run in AnalysisRun.objects.filter(stream_manifest=manifest, stream_day=day)
    }
    if all(sae.pk in runs for sae in saes):
        return _leader_first([runs[sae.pk] for sae in saes])
    with transaction.atomic():
        prompt_set = _stream_prompt_set(manifest, day)
        leader = next(iter(runs.values()), None)
        for sae in saes:
            if sae.pk in runs:
                continue
            run = AnalysisRun.objects.create(
                prompt_set=prompt_set,
                sae=sae,
                profile=manifest.profile,
                job=_stream_job(manifest, day),
                top_k=manifest.top_k,
                capture_limit=manifest.max_tokens_capture,
                checkpoint=manifest.checkpoint,
                stream_manifest=manifest,
                stream_day=day,
                pass_leader=leader,
                expires_at=expiry_for(manifest.profile),
            )
            leader = leader or run
            runs[sae.pk] = run
    return _leader_first([runs[sae.pk] for sae in saes])


def _leader_first(runs: list[AnalysisRun]) -> list[AnalysisRun]:
    return sorted(runs, key=lambda run: (run.pass_leader_id is not None, run.pk))


def _stream_prompt_set(manifest: InstrumentationManifest, day: date) -> PromptSet:
    name = f"stream {manifest.service} {day:%Y-%m-%d}"
    found = PromptSet.objects.filter(name=name, source_format="stream").first()
    if found is not None:
        return found
    return PromptSet.objects.create(
        name=name,
        description=f"Sampled requests of {manifest.service} on {day:%Y-%m-%d} (UTC).",
        profile=manifest.profile,
        source_filename=f"ingest/{manifest.service}/{day:%Y-%m-%d}",
        source_format="stream",
        source_sha256="",
        source_bytes=0,
        prompt_count=0,
        token_total=0,
        token_max=0,
        capture_limit=manifest.max_tokens_capture,
        over_limit_count=0,
        tokenizer=TOKENIZER_NAME,
        expires_at=expiry_for(manifest.profile),
    )


def batch_day(batch: IngestBatch) -> date:
    return batch.received_at.astimezone(UTC).date()


def ingest_process(batch_id: uuid.UUID | str) -> IngestBatch:
    """Analyse one batch into its day's stream runs (a redelivered batch is skipped)."""
    from traces.services.stream_execution import stream_chunk_execute

    batch = IngestBatch.objects.select_related("manifest__profile").get(pk=batch_id)
    if batch.state != IngestBatch.State.PENDING:
        return batch
    IngestBatch.objects.filter(pk=batch.pk).update(attempts=batch.attempts + 1)
    started = time.monotonic()
    originals = json.loads(read_bytes(batch.path))
    runs = stream_runs(batch.manifest, batch_day(batch))
    stream_chunk_execute(batch, runs, originals)
    delete_file(batch.path)
    batch.refresh_from_db()
    log.info(
        "ingest batch %s: %d requests in %.1f s",
        batch.pk,
        batch.records,
        time.monotonic() - started,
    )
    return batch


def ingest_fail(batch_id: uuid.UUID | str, reason: str) -> None:
    IngestBatch.objects.filter(pk=batch_id, state=IngestBatch.State.PENDING).update(
        state=IngestBatch.State.FAILED, error=reason[:2000], done_at=timezone.now()
    )


def stream_runs_close(today: date | None = None) -> int:
    """Close the stream runs of days that are over: their bundle manifest written and their job
    succeeded, as a finished run's. Batches of those days still pending are analysed first by
    their workers; a run waits until none is left."""
    from traces.services.run_execution import run_finish

    today = today or timezone.now().astimezone(UTC).date()
    closed = 0
    for run in AnalysisRun.objects.filter(
        stream_day__lt=today, job__state=JobState.RUNNING
    ).select_related("job", "stream_manifest"):
        assert run.stream_day is not None and run.stream_manifest is not None
        pending = [
            batch
            for batch in IngestBatch.objects.filter(
                manifest=run.stream_manifest, state=IngestBatch.State.PENDING
            )
            if batch_day(batch) <= run.stream_day
        ]
        if pending:
            continue
        run_finish(run.job_id, run)
        closed += 1
    return closed


def ingest_warm() -> list[str]:
    """Load every manifest's model and SAEs (and measure a missing FVU mean) in this worker,
    so the first sampled request after a start is analysed in seconds, not after the loads.
    What was warmed, in words (a failure is logged and skipped: the batch will say why)."""
    from traces.engine import runtime
    from traces.services.run_execution import loaded_sae_with_mean

    warmed = []
    for manifest in InstrumentationManifest.objects.prefetch_related("saes"):
        try:
            loaded = runtime.model_for(manifest.checkpoint, runtime.default_dtype())
            for record in manifest.saes.all():
                loaded_sae_with_mean(record, loaded)
        except Exception:
            log.exception("could not warm up for the manifest %s", manifest.service)
            continue
        warmed.append(f"{manifest.service}: {manifest.checkpoint}, {manifest.saes.count()} SAEs")
    return warmed
