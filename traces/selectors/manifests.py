"""What the manifest pages read: the list with key counts and last request, a document to start
from, and one manifest's version history (with diffs), ingest keys, forensic windows and latest
requests.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from traces.ingest.models import (
    ForensicWindow,
    IngestedRequest,
    IngestToken,
    InstrumentationManifest,
    ManifestVersion,
)
from traces.models import SaeRecord
from traces.services.manifests import SCHEMA_ID

EXAMPLE_CHECKPOINT = "google/gemma-3-270m"
RECENT_REQUESTS = 20
VERSIONS_SHOWN = 50


def manifest_list() -> QuerySet[InstrumentationManifest]:
    """Every manifest with its SAEs, profile, key counts and the last request received."""
    return (
        InstrumentationManifest.objects.select_related("profile")
        .prefetch_related("saes")
        .annotate(
            live_token_count=Count(
                "tokens", filter=Q(tokens__revoked_at__isnull=True), distinct=True
            ),
            revoked_token_count=Count(
                "tokens", filter=Q(tokens__revoked_at__isnull=False), distinct=True
            ),
            last_request_at=Max("requests__received_at"),
        )
    )


def manifest_example_yaml() -> str:
    """A document to start from: the registered SAEs of Gemma 3 270M, 1 % sampling, a
    commented targeted rule at 5 %, 1000 captured tokens, the UK profile."""
    names = list(
        SaeRecord.objects.filter(model_name=EXAMPLE_CHECKPOINT).values_list("name", flat=True)
    )
    saes = (
        yaml.safe_dump({"saes": names}, sort_keys=False).rstrip("\n")
        if names
        else "saes: []  # no SAE of google/gemma-3-270m is registered yet: add one under SAEs"
    )
    return (
        f"# Scope Web instrumentation manifest; schema: {SCHEMA_ID}\n"
        "service: chat-assistant\n"
        f"checkpoint: {EXAMPLE_CHECKPOINT}\n"
        f"{saes}\n"
        "sample_rate: 0.01\n"
        "# Targeted rules: the first rule whose tags all match sets the rate.\n"
        "# rules:\n"
        "#   - name: support-route\n"
        "#     match: {route: /v1/support}\n"
        "#     rate: 0.05\n"
        "max_tokens_capture: 1000\n"
        "profile: UK\n"
        "keep_completions: true\n"
    )


def document_yaml(document: dict[str, Any]) -> str:
    """A stored version's document as YAML, written as the export writes it."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class VersionRow:
    version: ManifestVersion
    yaml: str
    diff: str  # unified diff against the version before; empty for the first one


@dataclass(frozen=True)
class WindowRow:
    window: ForensicWindow
    state: str  # "pending", "open", "scheduled" or "over"

    @property
    def pending(self) -> bool:
        return self.state == "pending"


@dataclass(frozen=True)
class ManifestPage:
    manifest: InstrumentationManifest
    versions: list[VersionRow]
    tokens: list[IngestToken]
    windows: list[WindowRow]
    requests: list[IngestedRequest]


def _versions(manifest: InstrumentationManifest) -> list[VersionRow]:
    # one more than shown, so that the oldest shown still gets its diff
    stored = list(
        manifest.versions.select_related("changed_by").order_by("-version")[: VERSIONS_SHOWN + 1]
    )
    texts = [document_yaml(v.document) for v in stored]
    # every version differs in its number: diff what else changed
    bodies = [
        document_yaml({key: value for key, value in v.document.items() if key != "version"})
        for v in stored
    ]
    rows = []
    for i, version in enumerate(stored[:VERSIONS_SHOWN]):
        before = bodies[i + 1] if i + 1 < len(bodies) else ""
        diff = (
            "".join(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    bodies[i].splitlines(keepends=True),
                    fromfile=f"v{stored[i + 1].version}",
                    tofile=f"v{version.version}",
                )
            )
            if before
            else ""
        )
        rows.append(VersionRow(version, texts[i], diff))
    return rows


def window_state(window: ForensicWindow, now: datetime) -> str:
    """Where a window stands at ``now``: "pending" until approved, then "scheduled", "open"
    and "over" as its start and end pass."""
    if window.approved_at is None:
        return "pending"
    if window.end <= now:
        return "over"
    return "open" if window.start <= now else "scheduled"


def manifest_page(manifest: InstrumentationManifest) -> ManifestPage:
    """What the manifest's page shows below its editor."""
    now = timezone.now()
    windows = manifest.forensic_windows.select_related("requested_by", "approved_by")
    return ManifestPage(
        manifest=manifest,
        versions=_versions(manifest),
        tokens=list(manifest.tokens.select_related("created_by")),
        windows=[WindowRow(w, window_state(w, now)) for w in windows],
        requests=list(manifest.requests.select_related("trace")[:RECENT_REQUESTS]),
    )
