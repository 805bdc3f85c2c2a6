"""What the operations page reads: ingestion's rate, size, tokens, queue, overhead and failures,
with the storage projection (``traces.selectors.storage_projection``).

The report reads the same rows as ``/metrics`` (``traces.selectors.ingest_metrics``), bucketed by
hour over the last 24 hours or by day over the last 7: one query per family of figures, bucketed
in Python (percentiles are not portable SQL). Queue depth in the past is rebuilt from the
batches' ``received_at`` and ``done_at``; nothing else keeps it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from traces.ingest.models import IngestBatch, IngestCount, IngestedRequest, InstrumentationManifest
from traces.selectors.storage_projection import StorageProjection, storage_projection

TURNED_AWAY = {  # IngestCount's kinds, as the page says them
    "not_sampled": "not sampled",
    "duplicate": "duplicates",
    "rejected_queue_full": "refused (queue full)",
}


@dataclass(frozen=True)
class Span:
    """The page's time range: ``count`` buckets of ``step`` ending now."""

    key: str
    label: str
    step: timedelta
    count: int
    trunc: str  # the Trunc kind of a bucket


SPANS = {
    "24h": Span("24h", "last 24 hours, by hour", timedelta(hours=1), 24, "hour"),
    "7d": Span("7d", "last 7 days, by day", timedelta(days=1), 7, "day"),
}


@dataclass
class Bucket:
    start: datetime
    minutes: float
    requests: int = 0
    analysed: int = 0
    tokens_mean: float | None = None
    batches: int = 0
    batch_records: int = 0
    bytes_received: int = 0
    failed_batches: int = 0
    overheads: list[float] = field(default_factory=list, repr=False)
    overhead_p50: float | None = None
    overhead_p90: float | None = None
    queue_depth: int = 0  # requests waiting at the bucket's end (now, for the last bucket)
    lag_max_s: float | None = None  # longest wait of the batches analysed in the bucket

    @property
    def per_minute(self) -> float:
        return self.requests / self.minutes if self.minutes else 0.0

    @property
    def trace_kb(self) -> float | None:
        """Mean size of a sampled request as received, in KB (1024 bytes)."""
        return self.bytes_received / self.batch_records / 1024 if self.batch_records else None


@dataclass(frozen=True)
class ServiceRow:
    """One manifest's totals over the span."""

    manifest: InstrumentationManifest
    requests: int
    per_minute: float
    bytes_received: int
    pending_requests: int
    failed_batches: int


@dataclass(frozen=True)
class OperationsReport:
    at: datetime
    span: Span
    manifests: list[InstrumentationManifest]
    chosen: InstrumentationManifest | None  # None: all manifests together
    buckets: list[Bucket]
    services: list[ServiceRow]
    pending_batches: int
    pending_requests: int
    oldest_pending_at: datetime | None
    turned_away: dict[str, int]  # IngestCount's counts by kind (worded) over the span's days
    storage: StorageProjection

    @property
    def requests(self) -> int:
        return sum(b.requests for b in self.buckets)

    @property
    def failed_batches(self) -> int:
        return sum(b.failed_batches for b in self.buckets)

    @property
    def oldest_pending_s(self) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return (self.at - self.oldest_pending_at).total_seconds()

    @property
    def has_data(self) -> bool:
        return self.requests > 0 or any(b.batches for b in self.buckets)


def _percentile(values: list[float], share: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _floor(moment: datetime, span: Span) -> datetime:
    moment = moment.astimezone(UTC)
    if span.trunc == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def operations_report(
    *, service: str = "", span: str = "24h", now: datetime | None = None
) -> OperationsReport:
    """Ingestion's figures over ``span`` ("24h" or "7d") for one manifest (its ``service``)
    or, when ``service`` is empty or unknown, for all of them together."""
    now = now or timezone.now()
    chosen_span = SPANS.get(span, SPANS["24h"])
    manifests = list(InstrumentationManifest.objects.order_by("service"))
    chosen = next((m for m in manifests if m.service == service), None)
    scope = Q(manifest=chosen) if chosen else Q()

    first = _floor(now, chosen_span) - chosen_span.step * (chosen_span.count - 1)
    starts = [first + chosen_span.step * i for i in range(chosen_span.count)]
    buckets = {
        start: Bucket(
            start=start,
            minutes=(min(start + chosen_span.step, now) - start).total_seconds() / 60,
        )
        for start in starts
    }
    slot = _slotter(starts, chosen_span)

    # sampled requests and the tokens captured for the analysed ones, by bucket and manifest
    per_service: dict[int, int] = defaultdict(int)
    for row in (
        IngestedRequest.objects.filter(scope, received_at__gte=first)
        .annotate(bucket=Trunc("received_at", chosen_span.trunc, tzinfo=UTC))
        .values("bucket", "manifest")
        .annotate(n=Count("id"), analysed=Count("trace"), tokens=Avg("trace__tokens"))
    ):
        bucket = buckets.get(_floor(row["bucket"], chosen_span))
        per_service[row["manifest"]] += row["n"]
        if bucket is None:
            continue
        if row["tokens"] is not None:  # a mean of means, weighted by analysed requests
            total = (bucket.tokens_mean or 0.0) * bucket.analysed + row["tokens"] * row["analysed"]
            bucket.analysed += row["analysed"]
            bucket.tokens_mean = total / bucket.analysed
        bucket.requests += row["n"]

    # the tracer's overhead, as it reports it: percentiles need the values
    for received, overhead in IngestedRequest.objects.filter(
        scope, received_at__gte=first, overhead_ms__isnull=False
    ).values_list("received_at", "overhead_ms"):
        found = slot(received)
        if found is not None and overhead is not None:
            buckets[found].overheads.append(overhead)
    for bucket in buckets.values():
        bucket.overhead_p50 = _percentile(bucket.overheads, 0.5)
        bucket.overhead_p90 = _percentile(bucket.overheads, 0.9)

    # batches: size as received, failures, queue depth and lag; every batch the span can see
    pending_batches = pending_requests = 0
    oldest: datetime | None = None
    earliest: datetime | None = None  # the first batch received in the span
    bytes_by_service: dict[int, int] = defaultdict(int)
    pending_by_service: dict[int, int] = defaultdict(int)
    failed_by_service: dict[int, int] = defaultdict(int)
    ends = [start + chosen_span.step for start in starts]
    for manifest_id, received, done, records, size, state in (
        IngestBatch.objects.filter(scope)
        .filter(Q(done_at__isnull=True) | Q(done_at__gte=first))
        .values_list("manifest", "received_at", "done_at", "records", "bytes", "state")
    ):
        if state == IngestBatch.State.PENDING:
            pending_batches += 1
            pending_requests += records
            pending_by_service[manifest_id] += records
            oldest = received if oldest is None else min(oldest, received)
        found = slot(received)
        if found is not None:
            earliest = received if earliest is None else min(earliest, received)
            bucket = buckets[found]
            bucket.batches += 1
            bucket.batch_records += records
            bucket.bytes_received += size
            bytes_by_service[manifest_id] += size
            if state == IngestBatch.State.FAILED:
                bucket.failed_batches += 1
                failed_by_service[manifest_id] += 1
        for start, end in zip(starts, ends, strict=True):
            at = min(end, now)
            if received <= at and (done is None or done > at):
                buckets[start].queue_depth += records
        if done is not None and state == IngestBatch.State.DONE:
            done_slot = slot(done)
            if done_slot is not None:
                wait = (done - received).total_seconds()
                bucket = buckets[done_slot]
                bucket.lag_max_s = max(bucket.lag_max_s or 0.0, wait)

    days = _days(first, now)
    turned_away = {
        TURNED_AWAY.get(row["kind"], row["kind"]): row["n"]
        for row in IngestCount.objects.filter(scope, day__in=days)
        .values("kind")
        .annotate(n=Sum("count"))
        .order_by("kind")
    }

    # "at this rate": measured from the span's first batch (tracing may have begun within the
    # span), over one bucket at least
    measured_from = max(first, earliest) if earliest else first
    span_days = max((now - measured_from), chosen_span.step).total_seconds() / 86400
    storage = storage_projection(
        manifest=chosen,
        stream_days=days,
        days=span_days,
        received_bytes=sum(b.bytes_received for b in buckets.values()),
        requests=sum(b.requests for b in buckets.values()),
    )
    minutes = (now - first).total_seconds() / 60
    services = [
        ServiceRow(
            manifest=m,
            requests=per_service.get(m.pk, 0),
            per_minute=per_service.get(m.pk, 0) / minutes,
            bytes_received=bytes_by_service.get(m.pk, 0),
            pending_requests=pending_by_service.get(m.pk, 0),
            failed_batches=failed_by_service.get(m.pk, 0),
        )
        for m in manifests
        if chosen is None or m == chosen
    ]
    return OperationsReport(
        at=now,
        span=chosen_span,
        manifests=manifests,
        chosen=chosen,
        buckets=[buckets[start] for start in starts],
        services=services,
        pending_batches=pending_batches,
        pending_requests=pending_requests,
        oldest_pending_at=oldest,
        turned_away=turned_away,
        storage=storage,
    )


def _slotter(starts: list[datetime], span: Span) -> Callable[[datetime], datetime | None]:
    """The bucket start a moment falls in, or None outside the span."""
    known = set(starts)

    def slot(moment: datetime) -> datetime | None:
        start = _floor(moment, span)
        return start if start in known else None

    return slot


def _days(first: datetime, now: datetime) -> list[date]:
    """The UTC days from ``first`` to ``now`` (IngestCount's and stream runs' days)."""
    start, end = first.astimezone(UTC).date(), now.astimezone(UTC).date()
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
