"""The gate pages: the list, a gate edited as YAML with its versions, keys (each shown once) and
runs, the "Run now" form, and the gate's JSON schema."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from gates.forms import GateDocumentForm, GateKeyForm, GateRunStartForm
from gates.models import Gate, GateToken
from gates.pages import gate_example_yaml, gate_page, gates_overview
from gates.selectors import signoff_queue
from gates.services.definitions import (
    GateRefused,
    gate_save,
    gate_schema,
    gate_token_create,
    gate_token_revoke,
    gate_yaml,
    parse_gate_yaml,
)
from gates.services.runs import gate_run_start
from scopeweb.accounts.access import PUBLIC, access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import attempt, show_problems
from scopeweb.refusals import Refused


def _gate(name: str) -> Gate:
    return get_object_or_404(Gate.objects.select_related("profile", "prompt_set"), name=name)


@access("view_gates")
def gate_list(request: HttpRequest) -> HttpResponse:
    context = {"gates": gates_overview(), "awaiting": signoff_queue().count()}
    return render(request, "gates/gate_list.html", context)


def _save(request: HttpRequest, form: GateDocumentForm, gate: Gate | None) -> Gate | GateRefused:
    """Save the posted document: the gate, or the refusal to show above the editor."""
    data = form.cleaned_data
    try:
        document = parse_gate_yaml(data["document"])
        if gate is not None and document["name"] != gate.name:
            raise GateRefused(
                f"This page edits {gate.name}; the document names {document['name']}. "
                "Make a new gate for another name.",
                field="name",
            )
        if gate is None and Gate.objects.filter(name=document["name"]).exists():
            raise GateRefused(
                f"A gate named {document['name']} exists: edit it on its page.", field="name"
            )
        return gate_save(document=document, actor=Actor.of(request), via=data["via"])
    except GateRefused as exc:
        return exc


@access("manage_gates")
def gate_edit(request: HttpRequest, name: str = "") -> HttpResponse:
    gate = _gate(name) if name else None
    form = GateDocumentForm(request.POST or None, request.FILES or None)
    text = gate_yaml(gate) if gate else gate_example_yaml()
    refusal = None
    if request.method == "POST":
        text = request.POST.get("document", "")
        if form.is_valid():
            text = form.cleaned_data["document"]
            saved = _save(request, form, gate)
            if isinstance(saved, Gate):
                messages.success(request, f"Saved gate {saved.name}, version {saved.version}.")
                return redirect("gate_detail", name=saved.name)
            refusal = saved
    context = {"gate": gate, "form": form, "text": text, "refusal": refusal}
    return render(request, "gates/gate_edit.html", context)


def _detail(
    request: HttpRequest, gate: Gate, new_key: str = "", new_token: GateToken | None = None
) -> HttpResponse:
    context = {
        "page": gate_page(gate),
        "gate": gate,
        "text": gate_yaml(gate),
        "run_form": GateRunStartForm(),
        "new_key": new_key,
        "new_token": new_token,
        "api_url": request.build_absolute_uri(reverse("api_gate_runs")),
        "certificate_url": request.build_absolute_uri(reverse("api_gate_certificate")),
    }
    return render(request, "gates/gate_detail.html", context)


@access("view_gates")
def gate_detail(request: HttpRequest, name: str) -> HttpResponse:
    return _detail(request, _gate(name))


@access("run_gate")
@require_POST
def gate_run_start_view(request: HttpRequest, name: str) -> HttpResponse:
    gate = _gate(name)
    form = GateRunStartForm(request.POST, request.FILES)
    if not form.is_valid():
        show_problems(request, form.errors)
        return redirect(reverse("gate_detail", args=[gate.name]) + "#run-now")
    data, upload = form.cleaned_data, form.cleaned_data.get("prompts")
    try:
        run = gate_run_start(
            gate=gate,
            actor=Actor.of(request),
            checkpoint=data["checkpoint"],
            label=data["label"],
            prompts=upload.read() if upload is not None else None,
            prompts_name=upload.name if upload is not None else "",
        )
    except Refused as exc:
        messages.error(request, str(exc))
        return redirect(reverse("gate_detail", args=[gate.name]) + "#run-now")
    messages.success(request, f"Gate run {run.pk} queued.")
    return redirect("gate_run", run_id=run.pk)


@access("manage_gates")
@require_POST
@never_cache  # the new key is in this answer, and only in this one
def gate_key_create_view(request: HttpRequest, name: str) -> HttpResponse:
    gate = _gate(name)
    form = GateKeyForm(request.POST)
    try:
        if not form.is_valid():
            raise GateRefused("Give the key a name of 1 to 100 characters.", field="name")
        token, key = gate_token_create(
            gate=gate, name=form.cleaned_data["name"], actor=Actor.of(request)
        )
    except GateRefused as exc:
        messages.error(request, str(exc))
        return redirect(reverse("gate_detail", args=[gate.name]) + "#keys")
    return _detail(request, gate, new_key=key, new_token=token)


@access("manage_gates")
@require_POST
def gate_key_revoke_view(request: HttpRequest, name: str, token_id: int) -> HttpResponse:
    gate = _gate(name)
    token = get_object_or_404(GateToken, pk=token_id, gate=gate)
    attempt(
        request,
        lambda: gate_token_revoke(token=token, actor=Actor.of(request)),
        f"Revoked the gate key {token.name} ({token.prefix}…).",
    )
    return redirect(reverse("gate_detail", args=[gate.name]) + "#keys")


@access(PUBLIC)
def gate_schema_view(request: HttpRequest) -> HttpResponse:
    """Public, as the API's certificate is: editors and CI runners fetch it without a session."""
    return HttpResponse(json.dumps(gate_schema(), indent=2), content_type="application/schema+json")
