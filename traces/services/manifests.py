"""Instrumentation manifests: saved from a YAML document (the page's editor, an import, the
API), each save a new version kept whole; their ingest tokens; their forensic windows.

The document is the manifest's one shape: the page edits it, export writes it, import reads it,
and the tracer and the ingest sampler read its JSON form (``manifest_document``). It is checked
against the published JSON Schema (``traces/ingest/manifest_schema.json``) and then against the
registry (the SAEs exist and belong to the checkpoint's model family, the profile exists).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from celery import current_app
from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.documents import load_schema, parse_yaml_document
from scopeweb.refusals import Refused
from scopeweb.retention.models import RetentionProfile
from traces.ingest.models import (
    ForensicWindow,
    IngestToken,
    InstrumentationManifest,
    ManifestVersion,
)
from traces.models import SaeRecord

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "ingest" / "manifest_schema.json"
SCHEMA_ID = "scopeweb.instrumentation-manifest/v1"
MAX_DOCUMENT_BYTES = 64 * 1024
READ_ONLY = ("version", "forensic_windows", "schema")
WARM_TASK = "traces.tasks.ingest_warm_task"  # by name: services never import their tasks


class ManifestRefused(Refused):
    status = 400


def manifest_schema() -> dict[str, Any]:
    return load_schema(SCHEMA_PATH)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def manifest_document(manifest: InstrumentationManifest) -> dict[str, Any]:
    """The manifest as its YAML/JSON document, approved forensic windows included."""
    windows = manifest.forensic_windows.filter(approved_at__isnull=False).order_by("start")
    return {
        "schema": SCHEMA_ID,
        "service": manifest.service,
        "version": manifest.version,
        "checkpoint": manifest.checkpoint,
        "saes": sorted(sae.name for sae in manifest.saes.all()),
        "sample_rate": manifest.sample_rate,
        "rules": manifest.rules,
        "forensic_windows": [
            {
                "start": _iso(window.start),
                "end": _iso(window.end),
                "reason": window.reason,
                "match": window.match,
                "approved_by": window.approved_by.username if window.approved_by else "",
            }
            for window in windows
        ],
        "max_tokens_capture": manifest.max_tokens_capture,
        "top_k": manifest.top_k,
        "profile": manifest.profile.code,
        "keep_completions": manifest.keep_completions,
    }


def manifest_yaml(manifest: InstrumentationManifest) -> str:
    header = f"# Scope Web instrumentation manifest; schema: {SCHEMA_ID}\n"
    return header + yaml.safe_dump(manifest_document(manifest), sort_keys=False, allow_unicode=True)


def parse_manifest_yaml(text: str) -> dict[str, Any]:
    """A YAML (or JSON) document → a checked dict; every problem named with its line or path."""
    return parse_yaml_document(
        text,
        schema=manifest_schema(),
        what="manifest",
        example="service: …, checkpoint: …, …",
        refusal=ManifestRefused,
        max_bytes=MAX_DOCUMENT_BYTES,
    )


def _resolved(document: dict[str, Any]) -> tuple[RetentionProfile, list[SaeRecord]]:
    profile = RetentionProfile.objects.filter(code=document["profile"]).first()
    if profile is None:
        raise ManifestRefused(f"No retention profile has the code {document['profile']!r}.")
    saes = list(SaeRecord.objects.filter(name__in=document["saes"]))
    missing = sorted(set(document["saes"]) - {sae.name for sae in saes})
    if missing:
        raise ManifestRefused(f"These SAEs are not in the registry: {', '.join(missing)}.")
    models = {sae.model_name for sae in saes}
    if len(models) > 1:
        raise ManifestRefused(
            "The SAEs must belong to one model; these read " + ", ".join(sorted(models)) + "."
        )
    return profile, saes


@transaction.atomic
def manifest_save(
    *, document: dict[str, Any], actor: Actor, via: str = "web"
) -> InstrumentationManifest:
    """Create the document's service, or save it as that service's next version."""
    profile, saes = _resolved(document)
    manifest = (
        InstrumentationManifest.objects.select_for_update()
        .filter(service=document["service"])
        .first()
    )
    before = manifest_document(manifest) if manifest else None
    if manifest is None:
        manifest = InstrumentationManifest(service=document["service"], created_by=actor.user)
    else:
        manifest.version += 1
    manifest.checkpoint = document["checkpoint"]
    manifest.sample_rate = float(document.get("sample_rate", 0.01))
    manifest.rules = document.get("rules", [])
    manifest.max_tokens_capture = int(document.get("max_tokens_capture", 1000))
    manifest.top_k = int(document.get("top_k", 32))
    manifest.profile = profile
    manifest.keep_completions = bool(document.get("keep_completions", True))
    manifest.save()
    manifest.saes.set(saes)
    after = manifest_document(manifest)
    ManifestVersion.objects.create(
        manifest=manifest, version=manifest.version, document=after, changed_by=actor.user, via=via
    )
    # The ingest workers load the (maybe new) model and SAEs now, not on the first request.
    transaction.on_commit(lambda: current_app.send_task(WARM_TASK))
    audit_record(
        "manifest.create" if before is None else "manifest.update",
        actor=actor,
        obj=manifest,
        before=before,
        after=after,
    )
    return manifest


def ingest_token_create(
    *, manifest: InstrumentationManifest, name: str, actor: Actor
) -> tuple[IngestToken, str]:
    """A new ingest key for ``manifest``; the key itself is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ManifestRefused("Give the token a name of 1 to 100 characters.", field="name")
    key = IngestToken.new_key()
    token = IngestToken.objects.create(
        manifest=manifest,
        name=name,
        prefix=key[:12],
        key_sha256=IngestToken.hash_key(key),
        created_by=actor.user,
    )
    audit_record(
        "ingest_token.create", actor=actor, obj=token, detail={"manifest": manifest.service}
    )
    return token, key


def ingest_token_revoke(*, token: IngestToken, actor: Actor) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record("ingest_token.revoke", actor=actor, obj=token)


def forensic_window_request(
    *,
    manifest: InstrumentationManifest,
    start: datetime,
    end: datetime,
    reason: str,
    actor: Actor,
    match: dict[str, str] | None = None,
) -> ForensicWindow:
    """A window of 100 % sampling, pending until another admin approves it."""
    if end <= start:
        raise ManifestRefused("A forensic window must end after it starts.", field="end")
    if (end - start).total_seconds() > 7 * 86400:
        raise ManifestRefused("A forensic window lasts at most 7 days.", field="end")
    if not reason.strip():
        raise ManifestRefused("Say why the window is needed.", field="reason")
    window = ForensicWindow.objects.create(
        manifest=manifest,
        start=start,
        end=end,
        reason=reason.strip()[:500],
        match=match or {},
        requested_by=actor.user,
    )
    audit_record("forensic_window.request", actor=actor, obj=window, after=_window(window))
    return window


@transaction.atomic
def forensic_window_approve(*, window: ForensicWindow, actor: Actor) -> None:
    """Approve a window (four-eyes: never by its requester); the manifest gets a new version."""
    if window.approved_at is not None:
        raise ManifestRefused("This window is already approved.")
    if actor.user is not None and window.requested_by_id == actor.user.pk:
        raise ManifestRefused("Another admin must approve a window you requested.")
    window.approved_by = actor.user
    window.approved_at = timezone.now()
    window.save(update_fields=["approved_by", "approved_at"])
    manifest = window.manifest
    manifest.version += 1
    manifest.save(update_fields=["version", "updated_at"])
    ManifestVersion.objects.create(
        manifest=manifest,
        version=manifest.version,
        document=manifest_document(manifest),
        changed_by=actor.user,
        via="forensic-approval",
    )
    audit_record("forensic_window.approve", actor=actor, obj=window, after=_window(window))


def _window(window: ForensicWindow) -> dict[str, Any]:
    return {
        "manifest": window.manifest.service,
        "start": _iso(window.start),
        "end": _iso(window.end),
        "reason": window.reason,
        "match": window.match,
    }
