"""The trace list (filters, sorts, flagged traces) and the trace view: a strip of tokens coloured
by a feature, by the strongest watched feature or by reconstruction error, with a side panel of
the chosen token's features."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from traces.display.colours import trace_colouring
from traces.display.strip import panel_json, panel_payload, strip_html
from traces.forms.traces import TraceColourForm, TraceFilterForm
from traces.models import Trace
from traces.selectors.runs import run_list
from traces.selectors.trace_tokens import ArraysGone, TraceTokens, trace_token_view
from traces.selectors.traces import (
    SORTS,
    list_page,
    trace_list,
    trace_neighbours,
    trace_pass_saes,
    trace_sampled_request,
)
from traces.services.traces import trace_viewed

TRACES_PER_PAGE = 50


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


@access("browse_traces")
def trace_list_view(request: HttpRequest, run_id: int | None = None) -> HttpResponse:
    run = get_object_or_404(run_list(), pk=run_id) if run_id is not None else None
    form = TraceFilterForm(request.GET)
    page = None
    query = None
    if form.is_valid():
        query = form.query(run=run_id)
        page = list_page(trace_list(query), _page_number(request), TRACES_PER_PAGE)
    sort = query.sort if query else ""
    context = {
        "run": run,
        "form": form,
        "page": page,
        "query": query,
        "sorts": SORTS,
        "sort": sort,
    }
    return render(request, "traces/trace_list.html", context)


@access("browse_traces")
def trace_detail(request: HttpRequest, trace_id: int) -> HttpResponse:
    trace = get_object_or_404(
        Trace.objects.select_related("run__sae", "run__profile", "run__prompt_set", "prompt"),
        pk=trace_id,
    )
    trace_viewed(trace=trace, actor=Actor.of(request))
    colour_form = TraceColourForm(request.GET)
    context: dict[str, object] = {
        "trace": trace,
        "run": trace.run,
        "sae": trace.run.sae,
        "colour_form": colour_form,
        "neighbours": trace_neighbours(trace),
        "pass_saes": trace_pass_saes(trace),
        "sampled": trace_sampled_request(trace),
    }
    try:
        view = trace_token_view(trace)
    except ArraysGone:
        context["gone"] = True
    else:
        context |= _strip_context(view, colour_form, trace.run.sae.name)
    return render(request, "traces/trace_detail.html", context)


def _strip_context(view: TraceTokens, colour_form: TraceColourForm, sae: str) -> dict[str, object]:
    """The strip coloured as the form asks, the chosen token, and the side panel's data."""
    mode, feature = colour_form.mode(has_watched=bool(view.watched))
    colouring = trace_colouring(view, mode, feature)
    selected = colour_form.cleaned_data.get("token") if colour_form.is_valid() else None
    if selected is None or selected >= len(view):
        selected = 1 if len(view) > 1 else 0  # the first token after BOS
    panel = panel_payload(view, colouring) | {
        "featureUrl": reverse("feature_detail", args=[sae, 0])
    }
    return {
        "strip_html": strip_html(view, colouring),
        "panel_json": panel_json(panel),
        "colouring": colouring,
        "selected": selected,
        "flagged_tokens": sum(colouring.over),
        "completion_tokens": sum(view.is_completion),
    }
