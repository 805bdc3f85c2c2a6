"""What may expire and what protects it.

An item is protected while a legal hold is active on it or on something above it (a prompt set
holds its runs and their traces; a run holds its traces; a case holds the traces it cites, their
runs and prompt sets), or while a case cites it (evidence → trace → run → prompt set) and that
case is open, in review, awaiting sign-off, or its ``hold_until`` lies ahead. A prompt set goes
only after all its runs; a run still queued or running is never a candidate. Exports are held by
a hold on the run or case they copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from governance.models import Export, ExportKind, ExportState, HoldTarget, LegalHold
from reports.models import AuditCase, CaseState, Evidence
from scopeweb.jobs.models import JobState
from scopeweb.retention.models import REDACTED_BEFORE_STORAGE
from traces.models import AnalysisRun, PromptSet

LIVE_CASE_STATES = (CaseState.OPEN, CaseState.IN_REVIEW, CaseState.AWAITING_SIGN_OFF)
FINISHED_JOB_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
# An export being built may still write its artifact: wait until it settles.
BUSY_EXPORT_STATES = (ExportState.QUEUED, ExportState.BUILDING)


def active_holds() -> QuerySet[LegalHold]:
    """Holds in force, newest first."""
    return LegalHold.objects.filter(lifted_at__isnull=True).select_related("placed_by")


def holds_on(target_type: str, target_id: int) -> list[LegalHold]:
    """Active holds placed on exactly this object (for the hold box on its page)."""
    return list(active_holds().filter(target_type=target_type, target_id=target_id))


def _held_ids(target: HoldTarget) -> QuerySet[LegalHold, Any]:
    return LegalHold.objects.filter(lifted_at__isnull=True, target_type=target).values("target_id")


def protecting_cases(as_of: datetime) -> QuerySet[AuditCase]:
    """Cases that hold what they cite at ``as_of``: live ones, those whose extension has not
    passed (no ``hold_until`` counts as without end), and those under a legal hold."""
    return AuditCase.objects.filter(
        Q(state__in=LIVE_CASE_STATES)
        | Q(hold_until__isnull=True)
        | Q(hold_until__gt=as_of)
        | Q(pk__in=_held_ids(HoldTarget.CASE))
    )


def run_protected_q(as_of: datetime) -> Q:
    """On ``AnalysisRun``: held directly, through its prompt set, or cited by a protecting case."""
    cited = Evidence.objects.filter(
        trace__run=OuterRef("pk"), case__in=protecting_cases(as_of).values("pk")
    )
    return (
        Q(pk__in=_held_ids(HoldTarget.RUN))
        | Q(prompt_set_id__in=_held_ids(HoldTarget.PROMPT_SET))
        | Q(Exists(cited))
    )


def run_candidates(as_of: datetime) -> QuerySet[AnalysisRun]:
    """Runs expired at ``as_of``, finished, and free: what the purge deletes."""
    return (
        AnalysisRun.objects.filter(expires_at__lte=as_of, job__state__in=FINISHED_JOB_STATES)
        .exclude(run_protected_q(as_of))
        .order_by("expires_at", "pk")
    )


def prompt_set_candidates(as_of: datetime) -> QuerySet[PromptSet]:
    """Prompt sets expired and unheld whose runs all go too (runs are purged first)."""
    staying_runs = AnalysisRun.objects.filter(prompt_set=OuterRef("pk")).exclude(
        pk__in=run_candidates(as_of).values("pk")
    )
    return (
        PromptSet.objects.filter(expires_at__lte=as_of)
        .exclude(pk__in=_held_ids(HoldTarget.PROMPT_SET))
        .exclude(Exists(staying_runs))
        .order_by("expires_at", "pk")
    )


def export_protected_q() -> Q:
    """On ``Export``: a hold on the case or run it copies (or on that run's prompt set)."""
    runs_under_held_sets = AnalysisRun.objects.filter(
        prompt_set_id__in=_held_ids(HoldTarget.PROMPT_SET)
    ).values("pk")
    return Q(kind=ExportKind.CASE, target_id__in=_held_ids(HoldTarget.CASE)) | Q(
        Q(target_id__in=_held_ids(HoldTarget.RUN)) | Q(target_id__in=runs_under_held_sets),
        kind=ExportKind.RUN,
    )


def export_candidates(as_of: datetime) -> QuerySet[Export]:
    return (
        Export.objects.filter(expires_at__lte=as_of)
        .exclude(state__in=BUSY_EXPORT_STATES)
        .exclude(export_protected_q())
        .order_by("expires_at", "pk")
    )


def original_hours() -> int:
    return int(getattr(settings, "RETENTION_ORIGINAL_HOURS", 24))


def original_candidates(as_of: datetime) -> QuerySet[PromptSet]:
    """Prompt sets of profiles that redact before storage whose original upload is older than
    ``RETENTION_ORIGINAL_HOURS`` and not yet purged. Only a legal hold on the prompt set keeps
    the original longer. An original supplied again counts its hours from then."""
    cutoff = as_of - timedelta(hours=original_hours())
    candidates = (
        PromptSet.objects.filter(
            profile__redaction__in=REDACTED_BEFORE_STORAGE,
            created_at__lte=cutoff,
            import_job__isnull=False,
            import_job__params__has_key="upload_path",
            import_job__params__original_purged_at__isnull=True,
        )
        .exclude(pk__in=_held_ids(HoldTarget.PROMPT_SET))
        .select_related("import_job")
        .order_by("created_at", "pk")
    )
    supplied_since = [
        pk
        for pk, supplied in candidates.filter(
            import_job__params__has_key="original_supplied_at"
        ).values_list("pk", "import_job__params__original_supplied_at")
        if datetime.fromisoformat(supplied) > cutoff
    ]
    return candidates.exclude(pk__in=supplied_since)


@dataclass
class PurgeCandidates:
    """What a purge at ``as_of`` would delete, per kind (lazy querysets)."""

    as_of: datetime
    runs: QuerySet[AnalysisRun]
    prompt_sets: QuerySet[PromptSet]
    exports: QuerySet[Export]
    originals: QuerySet[PromptSet]

    def counts(self) -> dict[str, int]:
        return {
            "runs": self.runs.count(),
            "prompt_sets": self.prompt_sets.count(),
            "exports": self.exports.count(),
            "originals": self.originals.count(),
        }


def purge_candidates(as_of: datetime | None = None) -> PurgeCandidates:
    """Expired and unprotected items at ``as_of`` (default: now), per kind."""
    as_of = as_of or timezone.now()
    return PurgeCandidates(
        as_of=as_of,
        runs=run_candidates(as_of).select_related("prompt_set", "sae", "profile"),
        prompt_sets=prompt_set_candidates(as_of).select_related("profile"),
        exports=export_candidates(as_of).select_related("profile"),
        originals=original_candidates(as_of),
    )


@dataclass
class Upcoming:
    """Items that expire within ``days``: how many, how many of them something holds, and the
    first few of each kind (each with ``protected`` set)."""

    days: int
    until: datetime
    counts: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    items: dict[str, list[Any]] = field(default_factory=dict)


def upcoming_expiries(days: int, *, now: datetime | None = None, limit: int = 50) -> Upcoming:
    """Prompt sets, runs and exports whose expiry falls in the next ``days``; "held" means it
    would still be kept if the purge ran at the end of that window."""
    now = now or timezone.now()
    until = now + timedelta(days=days)
    due: dict[str, QuerySet[Any]] = {
        "runs": AnalysisRun.objects.filter(expires_at__gt=now, expires_at__lte=until).order_by(
            "expires_at", "pk"
        ),
        "prompt_sets": PromptSet.objects.filter(expires_at__gt=now, expires_at__lte=until).order_by(
            "expires_at", "pk"
        ),
        "exports": Export.objects.filter(expires_at__gt=now, expires_at__lte=until).order_by(
            "expires_at", "pk"
        ),
    }
    free = {
        "runs": run_candidates(until),
        "prompt_sets": prompt_set_candidates(until),
        "exports": export_candidates(until),
    }
    upcoming = Upcoming(days=days, until=until)
    for kind, queryset in due.items():
        total = queryset.count()
        going = queryset.filter(pk__in=free[kind].values("pk"))
        upcoming.counts[kind] = total
        upcoming.held[kind] = total - going.count()
        rows = list(queryset[:limit])
        going_ids = set(going.filter(pk__in=[row.pk for row in rows]).values_list("pk", flat=True))
        for row in rows:
            row.protected = row.pk not in going_ids
        upcoming.items[kind] = rows
    return upcoming
