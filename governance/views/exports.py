"""Export pages: request one, list them (admins decide the GDPR reviews there), one export
(its link shown once to its requester), and the single-use download link."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.forms.exports import ExportDecisionForm, ExportRequestForm
from governance.models import ExportState
from governance.selectors.exports import awaiting_decision_by, export_get, export_list
from governance.services.exports import (
    ExportRefused,
    LinkRefused,
    export_decide,
    export_download,
    export_link_issue,
    export_request,
)
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor


@access("export_data")
def export_list_view(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    user = Actor.of(request).person
    context = {
        "exports": export_list(user, state=state)[:200],
        "awaiting": awaiting_decision_by(user),
        "states": ExportState.choices,
        "state": state,
    }
    return render(request, "governance/export_list.html", context)


@access("export_data")
def export_create_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ExportRequestForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                export = export_request(
                    kind=data["kind"],
                    target_id=data["target_id"],
                    actor=Actor.of(request),
                    purpose=data["purpose"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                if export.state == ExportState.AWAITING_APPROVAL:
                    messages.info(
                        request, "Requested: an admin reviews it (GDPR) before it is built."
                    )
                else:
                    messages.success(request, "Requested: it is being built.")
                return redirect("export_detail", export_id=export.pk)
    else:
        initial = {"kind": request.GET.get("kind", ""), "target_id": request.GET.get("target", "")}
        form = ExportRequestForm(initial=initial)
    return render(request, "governance/export_create.html", {"form": form})


@access("export_data")
def export_detail_view(request: HttpRequest, export_id: int) -> HttpResponse:
    actor = Actor.of(request)
    export = export_get(actor.person, export_id)
    token = export_link_issue(export, actor=actor)
    context = {
        "export": export,
        "link": request.build_absolute_uri(reverse("export_download", args=[token]))
        if token
        else "",
        "decision_form": ExportDecisionForm()
        if export.state == ExportState.AWAITING_APPROVAL
        and export in awaiting_decision_by(actor.person)
        else None,
        "report": export.redaction_report or {},
    }
    # htmx polls the state panel alone while the export waits or builds.
    template = "governance/_export_state.html" if request.htmx else "governance/export_detail.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@access("approve_export")
@require_POST
def export_decide_view(request: HttpRequest, export_id: int) -> HttpResponse:
    actor = Actor.of(request)
    export = export_get(actor.person, export_id)
    form = ExportDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not decided: {form.errors.as_text()}")
        return redirect("export_detail", export_id=export.pk)
    approve = form.cleaned_data["decision"] == "approve"
    try:
        export_decide(
            export,
            approve=approve,
            note=form.cleaned_data["note"],
            actor=actor,
        )
    except (ExportRefused, ValidationError) as exc:
        text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, f"Not decided: {text}")
    else:
        messages.success(request, f"Export {export.pk} {'approved' if approve else 'refused'}.")
    if request.POST.get("next") == "list":
        return redirect("export_list")
    return redirect("export_detail", export_id=export.pk)


@access("use_export_link")
def export_download_view(request: HttpRequest, token: str) -> HttpResponseBase:
    """The single-use link: anyone with a role holding it (the requester passes it on; the
    audit log records who used it). Used, late and unknown links are refused."""
    try:
        found = export_download(token, actor=Actor.of(request))
    except LinkRefused as exc:
        return render(
            request,
            "governance/export_link_refused.html",
            {"reason": str(exc)},
            status=exc.status,
        )
    return FileResponse(
        found.handle, as_attachment=True, filename=found.filename, content_type="application/zip"
    )
