"""The tracing pages (admins): instrumentation manifests edited as YAML with their version
history, their ingest keys (each shown once), their forensic windows, and the JSON schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import SIGNED_IN, access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import attempt, show_problems
from traces.ingest.models import ForensicWindow, IngestToken, InstrumentationManifest
from traces.selectors.manifests import manifest_example_yaml, manifest_list, manifest_page
from traces.services.manifests import (
    MAX_DOCUMENT_BYTES,
    ManifestRefused,
    forensic_window_approve,
    forensic_window_request,
    ingest_token_create,
    ingest_token_revoke,
    manifest_save,
    manifest_schema,
    manifest_yaml,
    parse_manifest_yaml,
)

LOCAL_MINUTE = "%Y-%m-%dT%H:%M"  # what a datetime-local input sends


class ManifestForm(forms.Form):
    """The editor's text, or an uploaded YAML file in its place."""

    document = forms.CharField(required=False, strip=False)
    file = forms.FileField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_DOCUMENT_BYTES:
                raise forms.ValidationError(
                    f"The file is over {MAX_DOCUMENT_BYTES // 1024} KiB.", code="too_big"
                )
            try:
                data["document"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
            data["via"] = "import"
        else:
            data["via"] = "web"
        if not str(data.get("document") or "").strip():
            raise forms.ValidationError("Write the manifest, or choose a YAML file.")
        return data


class WindowForm(forms.Form):
    """A forensic window; the two datetime-local values are read as UTC."""

    start = forms.CharField()
    end = forms.CharField()
    reason = forms.CharField(max_length=500)
    match = forms.CharField(required=False, help_text="tag=value, one a line; empty: all requests")

    @staticmethod
    def _utc(value: str) -> datetime:
        try:
            return datetime.strptime(value.strip(), LOCAL_MINUTE).replace(tzinfo=UTC)
        except ValueError:
            raise forms.ValidationError("Give a date and time (UTC).") from None

    def clean_start(self) -> datetime:
        return self._utc(self.cleaned_data["start"])

    def clean_end(self) -> datetime:
        return self._utc(self.cleaned_data["end"])

    def clean_match(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in self.cleaned_data["match"].splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Write each match as tag=value, not {line!r}.")
            found[key.strip()] = value.strip()
        return found


def _manifest(service: str) -> InstrumentationManifest:
    return get_object_or_404(
        InstrumentationManifest.objects.select_related("profile"), service=service
    )


def _save(
    request: HttpRequest, form: ManifestForm, service: str = ""
) -> InstrumentationManifest | ManifestRefused:
    """Save the posted document: the manifest, or the refusal to show above the editor."""
    data = form.cleaned_data
    try:
        document = parse_manifest_yaml(data["document"])
        if service and document["service"] != service:
            raise ManifestRefused(
                f"This page edits {service}; the document names {document['service']}. "
                "Make a new manifest for another service.",
                field="service",
            )
        return manifest_save(document=document, actor=Actor.of(request), via=data["via"])
    except ManifestRefused as exc:
        return exc


@access("manage_manifests")
def manifest_list_view(request: HttpRequest) -> HttpResponse:
    return render(request, "traces/ingest/manifest_list.html", {"manifests": manifest_list()})


@access("manage_manifests")
def manifest_create_view(request: HttpRequest) -> HttpResponse:
    form = ManifestForm(request.POST or None, request.FILES or None)
    text, refusal = manifest_example_yaml(), None
    if request.method == "POST":
        text = request.POST.get("document", "")
        if form.is_valid():
            text = form.cleaned_data["document"]
            saved = _save(request, form)
            if isinstance(saved, InstrumentationManifest):
                messages.success(request, f"Saved {saved.service}, version {saved.version}.")
                return redirect("manifest_detail", service=saved.service)
            refusal = saved
    return render(
        request,
        "traces/ingest/manifest_create.html",
        {"form": form, "text": text, "refusal": refusal},
    )


def _detail(
    request: HttpRequest,
    manifest: InstrumentationManifest,
    *,
    form: ManifestForm | None = None,
    text: str | None = None,
    refusal: ManifestRefused | None = None,
    new_key: str = "",
    new_token: IngestToken | None = None,
) -> HttpResponse:
    soon = timezone.now().astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return render(
        request,
        "traces/ingest/manifest_detail.html",
        {
            "page": manifest_page(manifest),
            "manifest": manifest,
            "form": form or ManifestForm(),
            "text": manifest_yaml(manifest) if text is None else text,
            "refusal": refusal,
            "window_form": WindowForm(),
            "new_key": new_key,
            "new_token": new_token,
            "ingest_url": request.build_absolute_uri(reverse("api_ingest")),
            "window_start": soon.strftime(LOCAL_MINUTE),
            "window_end": (soon + timedelta(hours=1)).strftime(LOCAL_MINUTE),
        },
    )


@access("manage_manifests")
def manifest_detail_view(request: HttpRequest, service: str) -> HttpResponse:
    manifest = _manifest(service)
    if request.method != "POST":
        return _detail(request, manifest)
    form = ManifestForm(request.POST, request.FILES)
    text = request.POST.get("document", "")
    if not form.is_valid():
        return _detail(request, manifest, form=form, text=text)
    saved = _save(request, form, service=manifest.service)
    if isinstance(saved, InstrumentationManifest):
        messages.success(request, f"Saved {saved.service}, version {saved.version}.")
        return redirect("manifest_detail", service=saved.service)
    return _detail(request, manifest, form=form, text=form.cleaned_data["document"], refusal=saved)


@access("manage_manifests")
def manifest_export_view(request: HttpRequest, service: str) -> HttpResponse:
    manifest = _manifest(service)
    response = HttpResponse(manifest_yaml(manifest), content_type="application/yaml")
    filename = f"{manifest.service}-v{manifest.version}.yaml"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@access("manage_manifests")
@require_POST
@never_cache  # the new key is in this answer, and only in this one
def ingest_token_create_view(request: HttpRequest, service: str) -> HttpResponse:
    manifest = _manifest(service)
    try:
        token, key = ingest_token_create(
            manifest=manifest, name=request.POST.get("name", ""), actor=Actor.of(request)
        )
    except ManifestRefused as exc:
        messages.error(request, str(exc))
        return redirect("manifest_detail", service=manifest.service)
    return _detail(request, manifest, new_key=key, new_token=token)


@access("manage_manifests")
@require_POST
def ingest_token_revoke_view(request: HttpRequest, service: str, token_id: int) -> HttpResponse:
    manifest = _manifest(service)
    token = get_object_or_404(IngestToken, pk=token_id, manifest=manifest)
    attempt(
        request,
        lambda: ingest_token_revoke(token=token, actor=Actor.of(request)),
        f"Revoked the ingest key {token.name} ({token.prefix}…).",
    )
    return redirect("manifest_detail", service=manifest.service)


@access("manage_manifests")
@require_POST
def forensic_window_request_view(request: HttpRequest, service: str) -> HttpResponse:
    manifest = _manifest(service)
    form = WindowForm(request.POST)
    if not form.is_valid():
        show_problems(request, form.errors)
    else:
        data = form.cleaned_data
        attempt(
            request,
            lambda: forensic_window_request(
                manifest=manifest,
                start=data["start"],
                end=data["end"],
                reason=data["reason"],
                match=data["match"],
                actor=Actor.of(request),
            ),
            "Forensic window requested: another admin must approve it.",
        )
    return redirect(reverse("manifest_detail", args=[manifest.service]) + "#windows")


@access("manage_manifests")
@require_POST
def forensic_window_approve_view(
    request: HttpRequest, service: str, window_id: int
) -> HttpResponse:
    manifest = _manifest(service)
    window = get_object_or_404(
        ForensicWindow.objects.select_related("manifest"), pk=window_id, manifest=manifest
    )
    attempt(
        request,
        lambda: forensic_window_approve(window=window, actor=Actor.of(request)),
        "Forensic window approved: the manifest has a new version.",
    )
    return redirect(reverse("manifest_detail", args=[manifest.service]) + "#windows")


@access(SIGNED_IN)
def manifest_schema_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        json.dumps(manifest_schema(), indent=2), content_type="application/schema+json"
    )
