from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from reports.forms.cases import (
    EvidenceForm,
    TraceEvidenceForm,
)
from reports.models import AuditCase
from reports.selectors.cases import (
    case_get,
    open_cases_for_evidence,
)
from reports.services.evidence import evidence_add, evidence_remove
from reports.views.cases import _act, _problems
from scopeweb.accounts.access import access
from traces.models import Trace


@access("work_case")
@require_POST
def case_evidence_add_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    form = EvidenceForm(request.POST)
    if not form.is_valid():
        _problems(request, form.errors)
    else:
        data = form.cleaned_data
        _act(
            request,
            lambda: evidence_add(
                case=case,
                user=request.user,  # type: ignore[arg-type]
                trace=data["trace"],
                token_start=data["token_start"],
                token_end=data["token_end"],
                features=data["features"],
                note=data["note"],
                added_from="case",
                request=request,
            ),
            f"Evidence from trace {data['trace'].pk} added.",
        )
    return redirect("case_detail", case_id=case.pk)


@access("work_case")
@require_POST
def case_evidence_remove_view(request: HttpRequest, case_id: int, evidence_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    evidence = get_object_or_404(case.evidence, pk=evidence_id)
    _act(
        request,
        lambda: evidence_remove(
            case=case,
            user=request.user,  # type: ignore[arg-type]
            evidence=evidence,
            request=request,
        ),
        f"Evidence {evidence_id} removed.",
    )
    return redirect("case_detail", case_id=case.pk)


@access("work_case")
def trace_add_evidence_view(request: HttpRequest, trace_id: int) -> HttpResponse:
    """The trace view's "Add to case" form (GET: the fragment the trace page loads with htmx)
    and its submission (POST: back to the trace, with a message)."""
    trace = get_object_or_404(Trace.objects.select_related("run__sae"), pk=trace_id)
    cases = open_cases_for_evidence(request.user)
    if request.method == "POST":
        form = TraceEvidenceForm(request.POST, cases=cases)
        if not form.is_valid():
            _problems(request, form.errors)
        else:
            data = form.cleaned_data
            case: AuditCase = data["case"]
            _act(
                request,
                lambda: evidence_add(
                    case=case,
                    user=request.user,  # type: ignore[arg-type]
                    trace=trace,
                    token_start=data["token_start"],
                    token_end=data["token_end"],
                    features=data["features"],
                    note=data["note"],
                    added_from="trace",
                    request=request,
                ),
                f"Tokens {data['token_start']}–{data['token_end']} added to case {case.pk}.",
            )
        return redirect("trace_detail", trace_id=trace.pk)
    token = request.GET.get("token", "")
    start = (
        int(token) if token.isdigit() and int(token) < trace.tokens else min(1, trace.tokens - 1)
    )
    feature = request.GET.get("feature", "")
    form = TraceEvidenceForm(
        cases=cases,
        initial={
            "token_start": start,
            "token_end": start + 1,
            "features": feature if feature.isdigit() else "",
        },
    )
    return render(
        request,
        "reports/case_trace_evidence_form.html",
        {"trace": trace, "form": form, "has_cases": cases.exists()},
    )
