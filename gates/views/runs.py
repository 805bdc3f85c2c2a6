"""The gate run pages: one run (its state polled while it works, its metrics, decisions and
downloads), the reviewers' decision on it, the sign-off queue, and checking an attestation."""

from __future__ import annotations

import io
import json
from typing import Any

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from gates.forms import DecisionForm, EnvelopeForm
from gates.models import GateRun
from gates.pages import attestation_check, attestation_keyid, metric_rows, subjects
from gates.report import gate_run_report
from gates.selectors import gate_run_status, gate_runs, signoff_queue
from gates.services.attest import gate_run_result
from gates.services.definitions import GateRefused
from gates.services.runs import gate_run_decide
from reports.pdf.signing import SigningError
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import submit
from scopeweb_gate.outputs import junit_xml, markdown_summary, result_json

# format in the URL -> (writer, content type)
RESULT_FORMATS = {
    "json": (result_json, "application/json"),
    "xml": (junit_xml, "application/xml"),
    "md": (markdown_summary, "text/markdown; charset=utf-8"),
}
WORKING = (GateRun.State.QUEUED, GateRun.State.RUNNING)


def _run(run_id: int) -> GateRun:
    return get_object_or_404(gate_runs(), pk=run_id)


def _attachment(data: bytes, filename: str, content_type: str) -> FileResponse:
    return FileResponse(
        io.BytesIO(data), as_attachment=True, filename=filename, content_type=content_type
    )


@access("view_gates")
def gate_run_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run, actor = _run(run_id), Actor.of(request)
    status = gate_run_status(run)
    if request.htmx:  # type: ignore[attr-defined]
        if status["state"] not in WORKING:  # measured or stopped: the whole page changes
            return HttpResponse(status=204, headers={"HX-Refresh": "true"})
        return render(request, "gates/_run_progress.html", {"run": run, "status": status})
    decisions = list(run.decisions.select_related("reviewer"))
    may_decide = (
        actor.may("sign_off_gate")
        and status["state"] == GateRun.State.AWAITING_SIGNOFF
        and all(d.reviewer_id != actor.person.pk for d in decisions)
    )
    context: dict[str, Any] = {
        "run": run,
        "status": status,
        "rows": metric_rows(run),
        "decisions": decisions,
        "decision_form": DecisionForm() if may_decide else None,
        "is_starter": actor.user is not None and actor.user.pk == run.started_by_id,
        "subjects": subjects(run),
        "keyid": attestation_keyid(run),
    }
    return render(request, "gates/gate_run.html", context)


@access("sign_off_gate")
@require_POST
def gate_run_decide_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run, actor = _run(run_id), Actor.of(request)
    submit(
        request,
        DecisionForm(request.POST),
        lambda data: gate_run_decide(
            run=run, actor=actor, approve=data["decision"] == "approve", statement=data["statement"]
        ),
        lambda data: (
            f"Gate run {run.pk} {'approved' if data['decision'] == 'approve' else 'rejected'}."
        ),
    )
    return redirect("gate_run", run_id=run.pk)


@access("view_gates")
def gate_run_attestation_view(request: HttpRequest, run_id: int) -> FileResponse:
    run = _run(run_id)
    if not run.attestation:
        why = run.attestation_error or "no verdict yet"
        raise Http404(f"Gate run {run.pk} has no attestation: {why}.")
    data = (json.dumps(run.attestation, indent=2) + "\n").encode()
    return _attachment(data, f"gate-run-{run.pk}.intoto.json", "application/json")


@access("view_gates")
def gate_run_result_view(request: HttpRequest, run_id: int, fmt: str) -> FileResponse:
    """The run's result as ``scopeweb-gate`` writes it: JSON, JUnit XML or Markdown."""
    run = _run(run_id)
    result = gate_run_result(run)
    if fmt not in RESULT_FORMATS or result is None:
        raise Http404(f"Gate run {run.pk} has no {fmt} result.")
    write, content_type = RESULT_FORMATS[fmt]
    filename = f"gate-{run.gate.name}-run-{run.pk}.{fmt}"
    return _attachment(write(result).encode(), filename, content_type)


@access("view_gates")
def gate_run_report_view(request: HttpRequest, run_id: int) -> HttpResponseBase:
    run = _run(run_id)
    try:
        report = gate_run_report(run, actor=Actor.of(request))
    except GateRefused as exc:
        raise Http404(str(exc)) from exc
    except SigningError as exc:
        messages.error(request, f"No report: it cannot be signed. {exc}")
        return redirect("gate_run", run_id=run.pk)
    return _attachment(report.data, report.filename, "application/pdf")


@access("view_gates")
def signoff_queue_view(request: HttpRequest) -> HttpResponse:
    waiting = [(run, metric_rows(run)) for run in signoff_queue()]
    return render(request, "gates/signoff_queue.html", {"waiting": waiting})


@access("view_gates")
def attestation_verify_view(request: HttpRequest) -> HttpResponse:
    form = EnvelopeForm(request.POST or None, request.FILES or None)
    check = None
    if request.method == "POST" and form.is_valid():
        check = attestation_check(form.cleaned_data["text"])
    return render(request, "gates/verify.html", {"form": form, "check": check})
