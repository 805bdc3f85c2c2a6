"""The storage projection of the operations page: a month of what tracing stores, at the rate
measured over the page's span.

What is stored a day: the bytes received (``IngestBatch.bytes``, the originals as received) plus
the stream runs' artifacts (their stored bytes per analysed request × requests a day). × 30, at
``STORAGE_PRICE_GB_MONTH``, against ``STORAGE_COST_WARN_MONTHLY`` and
``STORAGE_COST_ALERT_MONTHLY`` (the platform's settings, the ones the storage cost page uses).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.db.models import Q

from scopeweb.storage import storage_files, stored_size
from traces.ingest.models import IngestedRequest, InstrumentationManifest
from traces.models import AnalysisRun

GB = 1024**3
# Stream runs without a recorded size are measured by listing their files; past this many
# files, the mean size of the first ones stands for the rest (object storage answers a size
# request per file).
SIZED_FILES_MAX = 200


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


def storage_projection(
    *,
    manifest: InstrumentationManifest | None,
    stream_days: list[date],
    days: float,
    received_bytes: int,
    requests: int,
) -> StorageProjection:
    """The projection for one manifest (None: all of them) from what the span measured: the
    ``received_bytes`` and sampled ``requests`` over ``days``, and the stream runs of
    ``stream_days`` for the artifacts an analysed request leaves."""
    runs = list(
        AnalysisRun.objects.filter(
            Q(stream_manifest=manifest) if manifest else Q(stream_manifest__isnull=False),
            stream_day__in=stream_days,
        ).only("pk", "summary", "pass_leader")
    )
    leaders = [run.pk for run in runs if run.pass_leader_id is None]
    scope = Q(manifest=manifest) if manifest else Q()
    stream_requests = IngestedRequest.objects.filter(scope, trace__run__in=leaders).count()
    return StorageProjection(
        days=days,
        received_bytes=received_bytes,
        requests=requests,
        stream_bytes=_stream_bytes(runs) if stream_requests else 0,
        stream_requests=stream_requests,
        price_gb_month=settings.STORAGE_PRICE_GB_MONTH,
        warn_monthly=settings.STORAGE_COST_WARN_MONTHLY,
        alert_monthly=settings.STORAGE_COST_ALERT_MONTHLY,
    )


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
