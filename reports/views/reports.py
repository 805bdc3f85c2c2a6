"""Report pages: download a case's signed PDF, verify a PDF, queue a report again."""

from __future__ import annotations

import io

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from reports.forms.reports import ReportVerifyForm
from reports.selectors.cases import case_get
from reports.services.reports import (
    ReportError,
    report_download,
    report_queue,
    report_verify_recorded,
)
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor


@access("read_signed_case")
def case_report_download_view(request: HttpRequest, case_id: int) -> FileResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    try:
        found = report_download(case=case, actor=actor)
    except ReportError as exc:
        raise Http404(str(exc)) from exc
    if found is None:
        raise Http404(f"Case {case_id} has no signed report yet.")
    return pdf_response(found[1], f"case-{case.pk}-report.pdf")


def pdf_response(data: bytes, filename: str) -> FileResponse:
    return FileResponse(
        io.BytesIO(data), as_attachment=True, filename=filename, content_type="application/pdf"
    )


@access("verify_report")
def report_verify_view(request: HttpRequest) -> HttpResponse:
    result = None
    if request.method == "POST":
        form = ReportVerifyForm(request.POST, request.FILES)
        if form.is_valid():
            result = report_verify_recorded(
                form.cleaned_data["file"],
                filename=getattr(request.FILES.get("file"), "name", "") or "",
                actor=Actor.of(request),
            )
    else:
        form = ReportVerifyForm()
    return render(request, "reports/verify.html", {"form": form, "result": result})


@access("sign_off_case")
@require_POST
def case_report_generate_view(request: HttpRequest, case_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    try:
        report_queue(case=case, actor=actor)
    except ReportError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The signed report is being generated.")
    return redirect("case_detail", case_id=case.pk)
