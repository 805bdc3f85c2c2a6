"""Evidence pages: citing tokens of a trace on a case (from the case page or from the trace
view's "Add to case" form) and taking a piece of evidence off. Each action is one service call;
a refusal becomes a message."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from reports.forms.cases import EvidenceForm, TraceEvidenceForm
from reports.models import AuditCase
from reports.selectors.cases import case_get, open_cases_for_evidence
from reports.services.evidence import evidence_add, evidence_remove
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import attempt, show_problems, submit
from traces.models import Trace


@access("work_case")
@require_POST
def case_evidence_add_view(request: HttpRequest, case_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    submit(
        request,
        EvidenceForm(request.POST),
        lambda data: evidence_add(
            case=case,
            actor=actor,
            trace=data["trace"],
            token_start=data["token_start"],
            token_end=data["token_end"],
            features=data["features"],
            note=data["note"],
            added_from="case",
        ),
        lambda data: f"Evidence from trace {data['trace'].pk} added.",
    )
    return redirect("case_detail", case_id=case.pk)


@access("work_case")
@require_POST
def case_evidence_remove_view(request: HttpRequest, case_id: int, evidence_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    evidence = get_object_or_404(case.evidence, pk=evidence_id)
    attempt(
        request,
        lambda: evidence_remove(case=case, actor=actor, evidence=evidence),
        f"Evidence {evidence_id} removed.",
    )
    return redirect("case_detail", case_id=case.pk)


@access("work_case")
def trace_add_evidence_view(request: HttpRequest, trace_id: int) -> HttpResponse:
    """The trace view's "Add to case" form (GET: the fragment the trace page loads with htmx)
    and its submission (POST: back to the trace, with a message)."""
    actor = Actor.of(request)
    trace = get_object_or_404(Trace.objects.select_related("run__sae"), pk=trace_id)
    cases = open_cases_for_evidence(actor.person)
    if request.method != "POST":
        return _trace_evidence_form(request, trace, cases)
    form = TraceEvidenceForm(request.POST, cases=cases)
    if not form.is_valid():
        show_problems(request, form.errors)
        return redirect("trace_detail", trace_id=trace.pk)
    data = form.cleaned_data
    case: AuditCase = data["case"]
    attempt(
        request,
        lambda: evidence_add(
            case=case,
            actor=actor,
            trace=trace,
            token_start=data["token_start"],
            token_end=data["token_end"],
            features=data["features"],
            note=data["note"],
            added_from="trace",
        ),
        f"Tokens {data['token_start']}–{data['token_end']} added to case {case.pk}.",
    )
    return redirect("trace_detail", trace_id=trace.pk)


def _trace_evidence_form(
    request: HttpRequest, trace: Trace, cases: QuerySet[AuditCase]
) -> HttpResponse:
    """The form, starting at the token and feature the reviewer had chosen in the strip."""
    token = request.GET.get("token", "")
    start = (
        int(token) if token.isdigit() and int(token) < trace.tokens else min(1, trace.tokens - 1)
    )
    feature = request.GET.get("feature", "")
    initial = {
        "token_start": start,
        "token_end": start + 1,
        "features": feature if feature.isdigit() else "",
    }
    form = TraceEvidenceForm(cases=cases, initial=initial)
    return render(
        request,
        "reports/case_trace_evidence_form.html",
        {"trace": trace, "form": form, "has_cases": cases.exists()},
    )
