"""What storage holds per retention profile, where it is heading, and what it costs.

Stored bytes per run come from its bundle manifest's file sizes (``summary["bytes_stored"]``,
written when the run finished) and, for runs without one (failed or cancelled part-way), from
listing its folder in storage. Prompt sets count their kept upload; exports their artifact.
The projection is the steady state at the recent rate: traces a day over the last 30 days ×
the profile's average bytes per trace × its retention days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from governance.models import Export
from scopeweb.jobs.models import Job
from scopeweb.retention.models import RetentionProfile
from scopeweb.storage import storage_files, stored_size
from traces.bundle.manifest import manifest_path
from traces.models import AnalysisRun

GB = 1024**3
RATE_WINDOW_DAYS = 30


@dataclass
class ProfileStorage:
    code: str
    name: str
    retention_days: int
    runs: int = 0
    traces: int = 0
    run_bytes: int = 0
    upload_bytes: int = 0
    export_bytes: int = 0
    recent_traces: int = 0
    projected_bytes: int = 0
    price_gb_month: float = 0.0

    @property
    def stored_bytes(self) -> int:
        return self.run_bytes + self.upload_bytes + self.export_bytes

    @property
    def bytes_per_trace(self) -> float:
        return self.run_bytes / self.traces if self.traces else 0.0

    @property
    def traces_per_day(self) -> float:
        return self.recent_traces / RATE_WINDOW_DAYS

    @property
    def monthly_cost(self) -> float:
        return self.stored_bytes / GB * self.price_gb_month

    @property
    def projected_monthly_cost(self) -> float:
        return self.projected_bytes / GB * self.price_gb_month


@dataclass
class StorageReport:
    at: datetime
    price_gb_month: float
    warn_monthly: float
    alert_monthly: float
    profiles: list[ProfileStorage] = field(default_factory=list)

    @property
    def stored_bytes(self) -> int:
        return sum(p.stored_bytes for p in self.profiles)

    @property
    def projected_bytes(self) -> int:
        return sum(p.projected_bytes for p in self.profiles)

    @property
    def monthly_cost(self) -> float:
        return sum(p.monthly_cost for p in self.profiles)

    @property
    def projected_monthly_cost(self) -> float:
        return sum(p.projected_monthly_cost for p in self.profiles)

    @property
    def level(self) -> str:
        """ "alert", "warn" or "ok", by the larger of today's and the projected monthly cost."""
        cost = max(self.monthly_cost, self.projected_monthly_cost)
        if cost >= self.alert_monthly:
            return "alert"
        if cost >= self.warn_monthly:
            return "warn"
        return "ok"


def _run_bytes(run: AnalysisRun) -> int:
    recorded = (run.summary or {}).get("bytes_stored")
    if isinstance(recorded, int | float):
        # The manifest itself is not among the chunk files it lists.
        return int(recorded) + stored_size(manifest_path(run.artifact_prefix))
    return sum(stored_size(name) for name in storage_files(run.artifact_prefix))


def storage_report(*, now: datetime | None = None) -> StorageReport:
    now = now or timezone.now()
    report = StorageReport(
        at=now,
        price_gb_month=settings.STORAGE_PRICE_GB_MONTH,
        warn_monthly=settings.STORAGE_COST_WARN_MONTHLY,
        alert_monthly=settings.STORAGE_COST_ALERT_MONTHLY,
    )
    since = now - timedelta(days=RATE_WINDOW_DAYS)
    for profile in RetentionProfile.objects.order_by("code"):
        row = ProfileStorage(
            profile.code, profile.name, profile.retention_days, price_gb_month=report.price_gb_month
        )
        runs = AnalysisRun.objects.filter(profile=profile).annotate(trace_count=Count("traces"))
        for run in runs.only("pk", "summary", "created_at"):
            row.runs += 1
            row.traces += run.trace_count
            row.run_bytes += _run_bytes(run)
            if run.created_at >= since:
                row.recent_traces += run.trace_count
        uploads = Job.objects.filter(
            prompt_set__profile=profile,
            params__has_key="upload_path",
            params__original_purged_at__isnull=True,
        ).values_list("params__upload_path", flat=True)
        row.upload_bytes = sum(stored_size(str(path)) for path in uploads)
        row.export_bytes = int(
            Export.objects.filter(profile=profile)
            .filter(~Q(artifact=""))
            .aggregate(total=Sum("size_bytes"))["total"]
            or 0
        )
        row.projected_bytes = int(row.traces_per_day * row.bytes_per_trace * profile.retention_days)
        report.profiles.append(row)
    return report
