"""Reads for the trace list: filters, sorts, the flagged mark, and a page without COUNT(*).

The list stays on index-friendly paths: a feature filter or sort joins the per-(trace, feature)
index ``TraceFeature`` (indexed on feature, max_activation), the flagged mark is one EXISTS per
listed trace on the (trace, feature) unique index, and pages are fetched as ``LIMIT n + 1`` so
that no query counts a table of 100k traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    ExpressionWrapper,
    F,
    FloatField,
    Q,
    QuerySet,
    Value,
)

from traces.ingest.models import IngestedRequest
from traces.models import (
    SAFETY_TAGS,
    AnalysisRun,
    FeatureAnnotation,
    Prompt,
    Trace,
    TraceFeature,
)

# sort key -> (label, ORDER BY); every ordering ends in pk so pages never overlap.
SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    # Within a run, prompt order; across runs, newest run first, then the order the run
    # stored its traces (prompt order): (run_id, pk) stays on the run foreign key's index.
    "": ("Run, then prompt order", ("-run_id", "pk")),
    "-tokens": ("Tokens, most first", ("-tokens", "-pk")),
    "tokens": ("Tokens, fewest first", ("tokens", "pk")),
    "-l0": ("L0, highest first", ("-l0", "-pk")),
    "l0": ("L0, lowest first", ("l0", "pk")),
    "-fvu": ("FVU, highest first", ("-fvu", "-pk")),
    "fvu": ("FVU, lowest first", ("fvu", "pk")),
    "-resid_norm": ("Residual norm, highest first", ("-resid_norm", "-pk")),
    "resid_norm": ("Residual norm, lowest first", ("resid_norm", "pk")),
    "-feature": ("Feature activation, highest first", ("-feature_value", "-pk")),
    "feature": ("Feature activation, lowest first", ("feature_value", "pk")),
}
FEATURE_SORTS = ("-feature", "feature")


@dataclass(frozen=True)
class TraceQuery:
    """What the list shows. ``feature`` alone keeps traces where the feature fired (is among
    some token's kept top-k, BOS left out as in the index); with ``above``, where its peak
    exceeds ``above``."""

    run: int | None = None
    prompt_set: int | None = None
    sae: int | None = None
    profile: str = ""
    text: str = ""
    feature: int | None = None
    above: float | None = None
    flagged: bool | None = None
    sort: str = ""


def watched_by_sae(sae_ids: list[int] | None = None) -> dict[int, dict[int, float]]:
    """{sae id: {feature index: watch threshold}} in one query; same rule as
    ``traces.selectors.features.watched_features`` (a threshold and a safety-vocabulary tag)."""
    rows = FeatureAnnotation.objects.filter(watch_threshold__isnull=False)
    if sae_ids is not None:
        rows = rows.filter(sae_id__in=sae_ids)
    watched: dict[int, dict[int, float]] = {}
    for sae_id, index, tags, threshold in rows.values_list(
        "sae_id", "index", "tags", "watch_threshold"
    ):
        if threshold is not None and set(tags) & set(SAFETY_TAGS):
            watched.setdefault(sae_id, {})[index] = threshold
    return watched


def flagged_condition(watched: dict[int, dict[int, float]]) -> Q | None:
    """A filter on ``Trace``: true where some watched feature of the trace's SAE peaks above
    its threshold (``watched`` as from ``watched_by_sae``); None when nothing is watched."""
    per_sae = []
    for sae_id, features in watched.items():
        # One index range per watched feature, joined with UNION ALL: each arm reads only the
        # (feature, max_activation) index (migration 0010), where an OR of the features would
        # visit one table page per matching row.
        arms = [
            TraceFeature.objects.filter(feature=f, max_activation__gt=t).values("trace_id")
            for f, t in sorted(features.items())
        ]
        hits = arms[0].union(*arms[1:], all=True) if len(arms) > 1 else arms[0]
        per_sae.append(Q(run__sae_id=sae_id) & Q(pk__in=hits))
    return reduce(or_, per_sae) if per_sae else None


# A text that more prompts than this hold is searched by walking the list's order (the first
# page fills at once); a rarer one through the trigram indexes (migration 0009).
TEXT_COMMON = 2000


def text_condition(text: str) -> Q:
    """A filter on ``Trace``: the prompt or the completion holds ``text`` (case-insensitive).

    On PostgreSQL a rare text is looked up in the trigram indexes, as two subqueries (an OR
    across the join could use neither index); a common one, and any on SQLite, is checked row by
    row while the list walks its index, which stops as soon as a page is full. Both forms find
    the same traces."""
    by_prompt = Q(prompt__text__icontains=text) | Q(completion__icontains=text)
    if connection.vendor != "postgresql":
        return by_prompt
    prompts = Prompt.objects.filter(text__icontains=text).order_by()
    if prompts.values("pk")[: TEXT_COMMON + 1].count() > TEXT_COMMON:
        return by_prompt
    completions = Trace.objects.filter(completion__icontains=text).values("pk")
    return Q(prompt_id__in=prompts.values("pk")) | Q(pk__in=completions)


def trace_list(query: TraceQuery) -> QuerySet[Trace]:
    """Traces matching ``query`` in its order, each with ``flagged`` and ``feature_value`` (the
    chosen feature's peak in the trace, or None)."""
    # What the list and its API show, and no more: the runs', SAEs' and prompts' JSON columns
    # (pins, summary, quality, tags, metadata) would be decoded once per listed row.
    traces = Trace.objects.select_related("prompt", "run__sae", "run__profile").only(
        *(f.name for f in Trace._meta.concrete_fields),
        "prompt__position",
        "prompt__text",
        "run__sae__name",
        "run__profile__code",
    )
    if query.run is not None:
        traces = traces.filter(run_id=query.run)
    if query.prompt_set is not None:
        traces = traces.filter(run__prompt_set_id=query.prompt_set)
    if query.sae is not None:
        traces = traces.filter(run__sae_id=query.sae)
    if query.profile:
        traces = traces.filter(run__profile__code=query.profile)
    if query.text:
        traces = traces.filter(text_condition(query.text))
    if query.feature is not None:
        # One join on the index, filtered and read by the same alias: the (feature,
        # -max_activation) index drives both the filter and a sort by the feature.
        condition = {"features__feature": query.feature}
        if query.above is not None:
            condition["features__max_activation__gt"] = query.above  # type: ignore[assignment]
        traces = traces.filter(**condition).annotate(feature_value=F("features__max_activation"))
    else:
        traces = traces.annotate(feature_value=Value(None, output_field=FloatField()))
    sae_ids = None
    if query.run is not None:
        sae_ids = list(AnalysisRun.objects.filter(pk=query.run).values_list("sae_id", flat=True))
    flag = flagged_condition(watched_by_sae(sae_ids))
    if flag is None:
        traces = traces.annotate(flagged=Value(False, output_field=BooleanField()))
        if query.flagged:
            traces = traces.none()
    else:
        traces = traces.annotate(flagged=ExpressionWrapper(flag, output_field=BooleanField()))
        if query.flagged is not None:
            traces = traces.filter(flag if query.flagged else ~flag)
    sort = query.sort if query.sort in SORTS else ""
    if sort in FEATURE_SORTS and query.feature is None:
        sort = ""
    # Within a run, pk order is prompt order: chunks commit in order, each in prompt order
    # (traces.services.runs). The default sort ("-run_id", "pk") so walks (run, id).
    return traces.order_by(*SORTS[sort][1])


@dataclass(frozen=True)
class ListPage:
    """One page of a list, found without counting it: ``has_next`` comes from fetching one
    row more than the page holds."""

    items: list[Any]
    number: int
    per_page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.per_page + 1


def list_page(rows: QuerySet[Any], number: int, per_page: int) -> ListPage:
    number = max(1, number)
    start = (number - 1) * per_page
    items = list(rows[start : start + per_page + 1])
    return ListPage(
        items=items[:per_page], number=number, per_page=per_page, has_next=len(items) > per_page
    )


def trace_neighbours(trace: Trace) -> dict[str, int | None]:
    """The ids of the run's traces before and after ``trace`` in prompt order.

    Walks the prompt set's (prompt_set, position) index and looks each step up by the
    (run, prompt) index, so it stays a few index probes on a run of any size."""
    prompts = Prompt.objects.filter(
        prompt_set_id=trace.prompt.prompt_set_id, traces__run_id=trace.run_id
    )
    position = trace.prompt.position
    before = (
        prompts.filter(position__lt=position)
        .order_by("-position")
        .values_list("traces__pk", flat=True)
        .first()
    )
    after = (
        prompts.filter(position__gt=position)
        .order_by("position")
        .values_list("traces__pk", flat=True)
        .first()
    )
    return {"previous": before, "next": after}


def trace_pass_saes(trace: Trace) -> list[Trace]:
    """The same prompt's traces in every run of ``trace``'s forward pass (one per SAE), for the
    trace view's SAE switch; empty for a single-SAE run. One query on the (run, prompt) index."""
    leader = trace.run.leader_id
    found = Trace.objects.filter(
        Q(run_id=leader) | Q(run__pass_leader_id=leader), prompt_id=trace.prompt_id
    )
    siblings = list(found.select_related("run__sae").order_by("run_id"))
    return siblings if len(siblings) > 1 else []


def trace_sampled_request(trace: Trace) -> IngestedRequest | None:
    """The production request a stream run's trace came from (None for other runs)."""
    if trace.run.stream_manifest_id is None:
        return None
    return (
        IngestedRequest.objects.select_related("manifest")
        .filter(manifest_id=trace.run.stream_manifest_id, otel_trace_id=trace.prompt.external_id)
        .first()
    )
