"""Opening an audit case from the triage queue (``c`` on a flagged trace)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from reports.forms.triage import TriageOpenCaseForm
from reports.services.triage import case_open_from_triage
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import problems_of, show_problems
from traces.models import Trace
from traces.services.triage import TriageRefused


@access("work_case")
@require_POST
def triage_open_case_view(request: HttpRequest, trace_id: int) -> HttpResponse:
    """Open an audit case with the trace as evidence, mark the trace reviewed, go to the case."""
    trace = get_object_or_404(Trace.objects.select_related("run__profile", "run__sae"), pk=trace_id)
    form = TriageOpenCaseForm(request.POST)
    if not form.is_valid():
        show_problems(request, form.errors)
        return redirect("triage_queue")
    try:
        case = case_open_from_triage(
            trace=trace,
            actor=Actor.of(request),
            note=form.cleaned_data["note"],
            severity=form.cleaned_data["severity"] or "medium",
        )
    except TriageRefused as exc:
        messages.error(request, str(exc))
        return redirect("triage_queue")
    except ValidationError as exc:
        reason = " ".join(m for found in problems_of(exc).values() for m in found)
        messages.error(request, f"No case opened for trace {trace.pk}: {reason}")
        return redirect("triage_queue")
    messages.success(
        request, f"Case {case.pk} opened with trace {trace.pk} as evidence; the trace is reviewed."
    )
    return redirect("case_detail", case_id=case.pk)
