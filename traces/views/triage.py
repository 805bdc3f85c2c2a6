"""The triage queue: flagged traces nobody has reviewed, one at a time, worked with the
keyboard (r reviewed, s skip, c open an audit case, o open the trace, ? help)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import show_problems
from traces.display.colours import trace_colouring
from traces.display.strip import strip_html
from traces.forms.triage import TriageDecisionForm
from traces.models import Trace, TriageReview
from traces.selectors.trace_tokens import ArraysGone, trace_token_view
from traces.selectors.triage import Tripped, triage_queue, triage_saes, tripped_features
from traces.services.triage import TriageRefused, triage_decide


def _strip(trace: Trace, tripped: list[Tripped], raw_feature: str) -> dict[str, Any]:
    """The trace's strip coloured by a tripped feature: the one asked for, else the one most
    over its threshold."""
    features = [t.feature for t in tripped]
    feature = int(raw_feature) if raw_feature.isdigit() and int(raw_feature) in features else None
    if feature is None and features:
        feature = features[0]
    try:
        view = trace_token_view(trace)
    except ArraysGone:
        return {"gone": True, "feature": feature}
    colouring = trace_colouring(view, "feature", feature)
    return {
        "feature": feature,
        "colouring": colouring,
        "strip_html": strip_html(view, colouring, choosable=False),
        "over_tokens": sum(colouring.over),
    }


@access("browse_traces")
def triage_queue_view(request: HttpRequest) -> HttpResponse:
    saes = triage_saes()
    sae = saes.filter(name=request.GET.get("sae", "")).first()
    queue = triage_queue(Actor.of(request).person, sae)
    trace = queue.first()
    context: dict[str, Any] = {"length": queue.count(), "trace": trace, "saes": saes, "sae": sae}
    if trace is not None:
        tripped = tripped_features([trace]).get(trace.pk, [])
        context |= {"tripped": tripped, "form": TriageDecisionForm()}
        context |= _strip(trace, tripped, request.GET.get("feature", ""))
    return render(request, "traces/triage.html", context)


@access("browse_traces")
@require_POST
def triage_decide_view(request: HttpRequest, trace_id: int) -> HttpResponse:
    trace = get_object_or_404(Trace.objects.select_related("run"), pk=trace_id)
    form = TriageDecisionForm(request.POST)
    if not form.is_valid():
        show_problems(request, form.errors)
        return redirect("triage_queue")
    decision = form.cleaned_data["decision"]
    try:
        triage_decide(
            trace=trace,
            actor=Actor.of(request),
            decision=decision,
            note=form.cleaned_data["note"],
        )
    except TriageRefused as exc:
        messages.error(request, str(exc))
    else:
        if decision == TriageReview.Decision.REVIEWED:
            messages.success(request, f"Trace {trace.pk} marked reviewed.")
        else:
            messages.info(request, f"Trace {trace.pk} skipped: it moved to the back of your queue.")
    sae = request.POST.get("sae", "")
    return redirect(reverse("triage_queue") + (f"?{urlencode({'sae': sae})}" if sae else ""))
