"""Reads for the triage queue: flagged traces that nobody has marked reviewed yet.

A trace is in the queue when a watched feature of its SAE (a safety tag and a watch threshold)
peaks above its threshold in it, as the trace list's flagged mark says, and no one has marked it
reviewed. Each reviewer sees the queue in trace order, except that the traces they skipped go
to the back, the one skipped longest ago first, so that skipping walks through the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db.models import Exists, F, Max, OuterRef, QuerySet, Subquery

from traces.models import FeatureAnnotation, SaeRecord, Trace, TraceFeature, TriageReview
from traces.selectors.traces import flagged_condition, watched_by_sae

Decision = TriageReview.Decision


@dataclass(frozen=True)
class Tripped:
    """A watched feature whose peak in a trace exceeds its threshold."""

    feature: int
    threshold: float
    peak: float
    label: str = ""
    safety_tags: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.peak / self.threshold if self.threshold > 0 else float("inf")


def triage_queue(user: User, sae: SaeRecord | None = None) -> QuerySet[Trace]:
    """The flagged, unreviewed traces in the order ``user`` works them (of one SAE's runs when
    ``sae`` is given); each has ``skipped_at`` (when ``user`` last skipped it, or None)."""
    condition = flagged_condition(watched_by_sae([sae.pk] if sae is not None else None))
    if condition is None:
        return Trace.objects.none()
    reviewed = TriageReview.objects.filter(trace=OuterRef("pk"), decision=Decision.REVIEWED)
    last_skip = (
        TriageReview.objects.filter(trace=OuterRef("pk"), reviewer=user, decision=Decision.SKIPPED)
        .values("trace")
        .annotate(last=Max("decided_at"))
        .values("last")
    )
    return (
        Trace.objects.filter(condition)
        .filter(~Exists(reviewed))
        .filter(**({"run__sae": sae} if sae is not None else {}))
        .annotate(skipped_at=Subquery(last_skip))
        .select_related("prompt", "run__sae", "run__profile")
        .order_by(F("skipped_at").asc(nulls_first=True), "pk")
    )


def tripped_features(traces: list[Trace]) -> dict[int, list[Tripped]]:
    """{trace id: its tripped features, the most over its threshold first}, in two queries."""
    sae_of = {t.pk: t.run.sae_id for t in traces}
    watched = watched_by_sae(sorted(set(sae_of.values())))
    candidates = set().union(*(w.keys() for w in watched.values())) if watched else set()
    rows = TraceFeature.objects.filter(trace_id__in=list(sae_of), feature__in=sorted(candidates))
    hits: dict[int, list[tuple[int, float, float]]] = {}
    for trace_id, feature, peak in rows.values_list("trace_id", "feature", "max_activation"):
        threshold = watched.get(sae_of[trace_id], {}).get(feature)
        if threshold is not None and peak > threshold:
            hits.setdefault(trace_id, []).append((feature, threshold, peak))
    wanted = {(sae_of[t], f) for t, found in hits.items() for f, _, _ in found}
    notes = {
        (a.sae_id, a.index): a
        for a in FeatureAnnotation.objects.filter(
            sae_id__in={s for s, _ in wanted}, index__in={f for _, f in wanted}
        ).only("sae_id", "index", "label", "tags")
    }
    result: dict[int, list[Tripped]] = {}
    for trace_id, found in hits.items():
        items = []
        for feature, threshold, peak in found:
            note = notes.get((sae_of[trace_id], feature))
            items.append(
                Tripped(
                    feature=feature,
                    threshold=threshold,
                    peak=peak,
                    label=note.label if note else "",
                    safety_tags=note.safety_tags if note else [],
                )
            )
        result[trace_id] = sorted(items, key=lambda t: (-t.ratio, t.feature))
    return result


def triage_reviewed(trace: Trace) -> TriageReview | None:
    """The decision that took ``trace`` out of the queue, if one did."""
    return (
        TriageReview.objects.filter(trace=trace, decision=Decision.REVIEWED)
        .select_related("reviewer")
        .order_by("decided_at", "pk")
        .first()
    )


def triage_saes() -> QuerySet[SaeRecord]:
    """The SAEs with a watched feature: those whose traces can enter the queue."""
    watched = watched_by_sae()
    return SaeRecord.objects.filter(pk__in=list(watched)).order_by("layer", "site", "name")
