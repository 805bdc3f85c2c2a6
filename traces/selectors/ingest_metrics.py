"""Ingestion's Prometheus metrics, read from the database at scrape time.

Web processes and workers come and go, so no figure lives in one process's memory: each scrape
reads what the batches, requests, stream runs and daily counts hold. Any web process answers
the same, however many run behind the load balancer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from traces.ingest.models import IngestBatch, IngestCount, IngestedRequest, InstrumentationManifest
from traces.models import AnalysisRun

SIZE_BUCKETS = (1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304)
TOKEN_BUCKETS = (16, 64, 128, 256, 512, 1_000, 2_000, 8_000)
OVERHEAD_BUCKETS = (0.001, 0.005, 0.01, 0.03, 0.1, 0.2, 0.5, 1.0)
WINDOW = timedelta(hours=1)  # histograms cover the last hour's requests


def _histogram(
    name: str, text: str, values_by_service: dict[str, list[float]], buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=["service"])
    for service, values in sorted(values_by_service.items()):
        counts = [sum(1 for v in values if v <= edge) for edge in buckets]
        family.add_metric(
            [service],
            [(str(edge), float(c)) for edge, c in zip(buckets, counts, strict=True)]
            + [("+Inf", float(len(values)))],
            sum_value=float(sum(values)),
        )
    return family


class IngestCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        services = dict(InstrumentationManifest.objects.values_list("pk", "service"))
        yield from self._rates(services, now)
        yield from self._queue(services, now)
        yield from self._sizes(services, now)
        yield from self._analysis(services)

    def _rates(self, services: dict[int, str], now: datetime) -> Iterator[Metric]:
        per_minute = GaugeMetricFamily(
            "scopeweb_ingest_traces_per_minute",
            "Sampled requests accepted over the last 5 minutes, per minute.",
            labels=["service"],
        )
        since = now - timedelta(minutes=5)
        recent = dict(
            IngestedRequest.objects.filter(received_at__gte=since)
            .values_list("manifest")
            .annotate(n=Count("id"))
            .values_list("manifest", "n")
        )
        for pk, service in sorted(services.items(), key=lambda i: i[1]):
            per_minute.add_metric([service], recent.get(pk, 0) / 5)
        yield per_minute
        sampled = CounterMetricFamily(
            "scopeweb_ingest_sampled", "Sampled requests accepted.", labels=["service"]
        )
        for row in IngestedRequest.objects.values("manifest").annotate(n=Count("id")):
            sampled.add_metric([services.get(row["manifest"], "?")], row["n"])
        yield sampled
        turned = CounterMetricFamily(
            "scopeweb_ingest_requests",
            "Requests not taken, by reason: not_sampled, duplicate, rejected_queue_full.",
            labels=["service", "reason"],
        )
        for row in IngestCount.objects.values("manifest", "kind").annotate(n=Sum("count")):
            turned.add_metric([services.get(row["manifest"], "?"), row["kind"]], row["n"])
        yield turned

    def _queue(self, services: dict[int, str], now: datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "scopeweb_ingest_queue_depth", "Requests waiting for analysis.", labels=["service"]
        )
        lag = GaugeMetricFamily(
            "scopeweb_ingest_lag_seconds",
            "Age of the oldest batch waiting for analysis.",
            labels=["service"],
        )
        failed = CounterMetricFamily(
            "scopeweb_ingest_failed_batches", "Batches whose analysis failed.", labels=["service"]
        )
        pending = {
            row["manifest"]: row
            for row in IngestBatch.objects.filter(state=IngestBatch.State.PENDING)
            .values("manifest")
            .annotate(n=Sum("records"), oldest=Min("received_at"))
        }
        fails = dict(
            IngestBatch.objects.filter(state=IngestBatch.State.FAILED)
            .values_list("manifest")
            .annotate(n=Count("id"))
            .values_list("manifest", "n")
        )
        for pk, service in sorted(services.items(), key=lambda i: i[1]):
            row = pending.get(pk)
            depth.add_metric([service], row["n"] if row else 0)
            age = (now - row["oldest"]).total_seconds() if row else 0.0
            lag.add_metric([service], age)
            failed.add_metric([service], fails.get(pk, 0))
        yield depth
        yield lag
        yield failed

    def _sizes(self, services: dict[int, str], now: datetime) -> Iterator[Metric]:
        since = now - WINDOW
        sizes: dict[str, list[float]] = {}
        for manifest, size, records in IngestBatch.objects.filter(
            received_at__gte=since
        ).values_list("manifest", "bytes", "records"):
            sizes.setdefault(services.get(manifest, "?"), []).extend(
                [size / max(records, 1)] * records
            )
        yield _histogram(
            "scopeweb_ingest_trace_bytes",
            "Size of a sampled request as received (the last hour).",
            sizes,
            SIZE_BUCKETS,
        )
        tokens: dict[str, list[float]] = {}
        overheads: dict[str, list[float]] = {}
        for manifest, count, overhead in IngestedRequest.objects.filter(
            received_at__gte=since, trace__isnull=False
        ).values_list("manifest", "trace__tokens", "overhead_ms"):
            tokens.setdefault(services.get(manifest, "?"), []).append(float(count))
            if overhead is not None:
                overheads.setdefault(services.get(manifest, "?"), []).append(overhead / 1000)
        yield _histogram(
            "scopeweb_ingest_tokens_per_request",
            "Tokens captured per analysed request (the last hour).",
            tokens,
            TOKEN_BUCKETS,
        )
        yield _histogram(
            "scopeweb_tracer_overhead_seconds",
            "Time the tracer added to a traced request, as it reports it (the last hour).",
            overheads,
            OVERHEAD_BUCKETS,
        )

    def _analysis(self, services: dict[int, str]) -> Iterator[Metric]:
        rate = GaugeMetricFamily(
            "scopeweb_ingest_analysis_tokens_per_second",
            "Tokens analysed per second of compute in today's stream runs.",
            labels=["service"],
        )
        today = datetime.now(UTC).date()
        for row in (
            AnalysisRun.objects.filter(stream_day=today, pass_leader__isnull=True)
            .values("stream_manifest")
            .annotate(tokens=Sum("tokens_done"), seconds=Sum("compute_seconds"))
        ):
            seconds = row["seconds"] or 0.0
            value = (row["tokens"] or 0) / seconds if seconds else 0.0
            rate.add_metric([services.get(row["stream_manifest"], "?")], value)
        yield rate
