"""What the tracing pages read: the manifests with their keys, windows and history, and the
operations report (rate, size, tokens, queue, overhead, failures and the storage projection).

The operations report reads the same rows as ``/metrics`` (``traces.selectors.ingest_metrics``),
bucketed by hour over the last 24 hours or by day over the last 7: one query per family of
figures, bucketed in Python (percentiles are not portable SQL). Queue depth in the past is
rebuilt from the batches' ``received_at`` and ``done_at``; nothing else keeps it.

The storage projection prices a month of what tracing stores at today's rate: the bytes received
a day (``IngestBatch.bytes``, the originals as received) plus the stream runs' artifacts a day
(their stored bytes per analysed request × requests a day), × 30, at
``STORAGE_PRICE_GB_MONTH``, against ``STORAGE_COST_WARN_MONTHLY`` and
``STORAGE_COST_ALERT_MONTHLY`` (the platform's settings, the ones the storage cost page uses).
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml
from django.conf import settings
from django.db.models import Avg, Count, Max, Q, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from scopeweb.storage import storage_files, stored_size
from traces.ingest.models import (
    ForensicWindow,
    IngestBatch,
    IngestCount,
    IngestedRequest,
    IngestToken,
    InstrumentationManifest,
    ManifestVersion,
)
from traces.models import AnalysisRun, SaeRecord
from traces.services.manifests import SCHEMA_ID

GB = 1024**3
EXAMPLE_CHECKPOINT = "google/gemma-3-270m"
RECENT_REQUESTS = 20
VERSIONS_SHOWN = 50
# Stream runs without a recorded size are measured by listing their files; past this many
# files, the mean size of the first ones stands for the rest (object storage answers a size
# request per file).
SIZED_FILES_MAX = 200
TURNED_AWAY = {  # IngestCount's kinds, as the page says them
    "not_sampled": "not sampled",
    "duplicate": "duplicates",
    "rejected_queue_full": "refused (queue full)",
}


# --- the manifest pages ----------------------------------------------------------------------


def manifest_list() -> QuerySet[InstrumentationManifest]:
    """Every manifest with its SAEs, profile, key counts and the last request received."""
    return (
        InstrumentationManifest.objects.select_related("profile")
        .prefetch_related("saes")
        .annotate(
            live_token_count=Count(
                "tokens", filter=Q(tokens__revoked_at__isnull=True), distinct=True
            ),
            revoked_token_count=Count(
                "tokens", filter=Q(tokens__revoked_at__isnull=False), distinct=True
            ),
            last_request_at=Max("requests__received_at"),
        )
    )


def manifest_example_yaml() -> str:
    """A document to start from: the registered SAEs of Gemma 3 270M, 1 % sampling, a
    commented targeted rule at 5 %, 1000 captured tokens, the UK profile."""
    names = list(
        SaeRecord.objects.filter(model_name=EXAMPLE_CHECKPOINT).values_list("name", flat=True)
    )
    saes = (
        yaml.safe_dump({"saes": names}, sort_keys=False).rstrip("\n")
        if names
        else "saes: []  # no SAE of google/gemma-3-270m is registered yet: add one under SAEs"
    )
    return (
        f"# Scope Web instrumentation manifest; schema: {SCHEMA_ID}\n"
        "service: chat-assistant\n"
        f"checkpoint: {EXAMPLE_CHECKPOINT}\n"
        f"{saes}\n"
        "sample_rate: 0.01\n"
        "# Targeted rules: the first rule whose tags all match sets the rate.\n"
        "# rules:\n"
        "#   - name: support-route\n"
        "#     match: {route: /v1/support}\n"
        "#     rate: 0.05\n"
        "max_tokens_capture: 1000\n"
        "profile: UK\n"
        "keep_completions: true\n"
    )


def document_yaml(document: dict[str, Any]) -> str:
    """A stored version's document as YAML, written as the export writes it."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class VersionRow:
    version: ManifestVersion
    yaml: str
    diff: str  # unified diff against the version before; empty for the first one


@dataclass(frozen=True)
class WindowRow:
    window: ForensicWindow
    state: str  # "pending", "open", "scheduled" or "over"

    @property
    def pending(self) -> bool:
        return self.state == "pending"


@dataclass(frozen=True)
class ManifestPage:
    manifest: InstrumentationManifest
    versions: list[VersionRow]
    tokens: list[IngestToken]
    windows: list[WindowRow]
    requests: list[IngestedRequest]


def _versions(manifest: InstrumentationManifest) -> list[VersionRow]:
    # one more than shown, so that the oldest shown still gets its diff
    stored = list(
        manifest.versions.select_related("changed_by").order_by("-version")[: VERSIONS_SHOWN + 1]
    )
    texts = [document_yaml(v.document) for v in stored]
    # every version differs in its number: diff what else changed
    bodies = [
        document_yaml({key: value for key, value in v.document.items() if key != "version"})
        for v in stored
    ]
    rows = []
    for i, version in enumerate(stored[:VERSIONS_SHOWN]):
        before = bodies[i + 1] if i + 1 < len(bodies) else ""
        diff = (
            "".join(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    bodies[i].splitlines(keepends=True),
                    fromfile=f"v{stored[i + 1].version}",
                    tofile=f"v{version.version}",
                )
            )
            if before
            else ""
        )
        rows.append(VersionRow(version, texts[i], diff))
    return rows


def window_state(window: ForensicWindow, now: datetime) -> str:
    if window.approved_at is None:
        return "pending"
    if window.end <= now:
        return "over"
    return "open" if window.start <= now else "scheduled"


def manifest_page(manifest: InstrumentationManifest) -> ManifestPage:
    """What the manifest's page shows below its editor."""
    now = timezone.now()
    windows = manifest.forensic_windows.select_related("requested_by", "approved_by")
    return ManifestPage(
        manifest=manifest,
        versions=_versions(manifest),
        tokens=list(manifest.tokens.select_related("created_by")),
        windows=[WindowRow(w, window_state(w, now)) for w in windows],
        requests=list(manifest.requests.select_related("trace")[:RECENT_REQUESTS]),
    )


# --- the operations page ---------------------------------------------------------------------


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
class StorageProjection:
    days: float  # the span measured
    received_bytes: int
    requests: int
    stream_bytes: int  # the stream runs' stored artifacts measured
    stream_requests: int  # the analysed requests those artifacts hold
    price_gb_month: float
    warn_monthly: float
    alert_monthly: float

    @property
    def received_per_day(self) -> float:
        return self.received_bytes / self.days

    @property
    def stored_per_request(self) -> float:
        return self.stream_bytes / self.stream_requests if self.stream_requests else 0.0

    @property
    def stored_per_day(self) -> float:
        return self.requests / self.days * self.stored_per_request

    @property
    def bytes_per_day(self) -> float:
        return self.received_per_day + self.stored_per_day

    @property
    def monthly_bytes(self) -> float:
        return self.bytes_per_day * 30

    @property
    def monthly_cost(self) -> float:
        return self.monthly_bytes / GB * self.price_gb_month

    @property
    def level(self) -> str:
        """ "alert", "warn" or "ok": the thresholds the monthly projection crosses."""
        if self.monthly_cost >= self.alert_monthly:
            return "alert"
        if self.monthly_cost >= self.warn_monthly:
            return "warn"
        return "ok"


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


def _stream_bytes(runs: Iterable[AnalysisRun]) -> int:
    """The runs' stored artifacts: the size a finished run recorded, else its files' sizes."""
    total = 0
    for run in runs:
        recorded = (run.summary or {}).get("bytes_stored")
        if isinstance(recorded, int | float):
            total += int(recorded)
            continue
        names = storage_files(run.artifact_prefix)
        sized = [stored_size(name) for name in names[:SIZED_FILES_MAX]]
        if sized:
            total += int(sum(sized) / len(sized) * len(names))
    return total


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

    runs = list(
        AnalysisRun.objects.filter(
            Q(stream_manifest=chosen) if chosen else Q(stream_manifest__isnull=False),
            stream_day__in=days,
        ).only("pk", "summary", "pass_leader")
    )
    leaders = [run.pk for run in runs if run.pass_leader_id is None]
    stream_requests = IngestedRequest.objects.filter(scope, trace__run__in=leaders).count()
    # "at this rate": measured from the span's first batch (tracing may have begun within the
    # span), over one bucket at least
    measured_from = max(first, earliest) if earliest else first
    span_days = max((now - measured_from), chosen_span.step).total_seconds() / 86400
    storage = StorageProjection(
        days=span_days,
        received_bytes=sum(b.bytes_received for b in buckets.values()),
        requests=sum(b.requests for b in buckets.values()),
        stream_bytes=_stream_bytes(runs) if stream_requests else 0,
        stream_requests=stream_requests,
        price_gb_month=settings.STORAGE_PRICE_GB_MONTH,
        warn_monthly=settings.STORAGE_COST_WARN_MONTHLY,
        alert_monthly=settings.STORAGE_COST_ALERT_MONTHLY,
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
