"""The tracing pages: manifests edited as YAML on the page with their history, export that
re-imports, ingest keys shown once, four-eyes forensic windows, and the operations page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from tests.conftest import client_for
from tests.factories import make_run, make_trace, make_user
from traces.ingest.models import (
    ForensicWindow,
    IngestBatch,
    IngestedRequest,
    IngestToken,
    InstrumentationManifest,
    ManifestVersion,
)
from traces.models import SaeRecord
from traces.selectors.operations import operations_report
from traces.services.manifests import manifest_save, parse_manifest_yaml

pytestmark = pytest.mark.django_db
SERVICE = "chat-staging"
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"


def _sae(name: str = "tiny") -> SaeRecord:
    return SaeRecord.objects.create(
        name=name, reference="/nowhere", model_name="google/gemma-3-270m", site="resid_post",
        layer=3, width=128, hook_point="model.layers.3.output", params_sha256="0" * 64,
    )  # fmt: skip


def _yaml(rate: float = 1.0, capture: int = 256) -> str:
    return (
        f"service: {SERVICE}\ncheckpoint: google/gemma-3-270m\nsaes: [tiny]\n"
        f"sample_rate: {rate}\nprofile: US\nmax_tokens_capture: {capture}\ntop_k: 8\n"
    )


def _manifest(admin: User, rate: float = 1.0) -> InstrumentationManifest:
    _sae()
    return manifest_save(document=parse_manifest_yaml(_yaml(rate)), actor=Actor.command(admin))


def _ingest(key: str) -> Any:
    body = {"traces": [{"trace_id": TRACE_A, "prompt": "Hi"}]}
    return Client().post(
        "/api/ingest/v1/traces",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )


def _detail(service: str = SERVICE) -> str:
    return reverse("manifest_detail", args=[service])


# --- manifests -------------------------------------------------------------------------------


def test_an_admin_creates_a_manifest_from_yaml_on_the_page(admin: User) -> None:
    _sae()
    client = client_for(admin)
    page = client.get(reverse("manifest_create"))
    assert page.status_code == 200
    text = page.content.decode()
    # the example starts from the registered SAEs of Gemma 3 270M, at 1 %, UK
    assert "google/gemma-3-270m" in text and "- tiny" in text and "sample_rate: 0.01" in text
    assert "profile: UK" in text and "#     rate: 0.05" in text

    response = client.post(reverse("manifest_create"), {"document": _yaml()})
    assert response.status_code == 302 and response["Location"] == _detail()
    manifest = InstrumentationManifest.objects.get(service=SERVICE)
    assert manifest.version == 1 and manifest.max_tokens_capture == 256
    assert ManifestVersion.objects.get(manifest=manifest).via == "web"
    listing = client.get(reverse("manifest_list")).content.decode()
    assert SERVICE in listing and "tiny" in listing


def test_a_manifest_file_is_imported(admin: User) -> None:
    _sae()
    upload = SimpleUploadedFile("m.yaml", _yaml().encode(), content_type="application/yaml")
    response = client_for(admin).post(reverse("manifest_create"), {"document": "", "file": upload})
    assert response.status_code == 302
    assert ManifestVersion.objects.get(manifest__service=SERVICE).via == "import"


def test_bad_yaml_shows_the_line_keeps_the_text_and_stores_nothing(admin: User) -> None:
    _sae()
    typed = "service: chat-staging\nsaes: [unclosed\n"
    response = client_for(admin).post(reverse("manifest_create"), {"document": typed})
    assert response.status_code == 200
    text = response.content.decode()
    assert "not valid YAML" in text and "line 3" in text
    assert "saes: [unclosed" in text  # the textarea keeps what was typed
    assert not InstrumentationManifest.objects.exists()
    assert not ManifestVersion.objects.exists()


def test_a_schema_problem_names_its_field(admin: User) -> None:
    _sae()
    response = client_for(admin).post(reverse("manifest_create"), {"document": _yaml(rate=2.0)})
    assert response.status_code == 200
    text = response.content.decode()
    assert "does not match its schema" in text
    assert "<code>sample_rate</code>" in text and "greater than the maximum" in text
    assert not InstrumentationManifest.objects.exists()


def test_editing_makes_version_2_and_the_history_shows_both(admin: User) -> None:
    manifest = _manifest(admin)
    client = client_for(admin)
    response = client.post(_detail(), {"document": _yaml(capture=512)})
    assert response.status_code == 302
    manifest.refresh_from_db()
    assert manifest.version == 2 and manifest.max_tokens_capture == 512
    page = client.get(_detail()).content.decode()
    assert 'id="v2"' in page and 'id="v1"' in page
    assert "max_tokens_capture: 512" in page  # the editor holds the current version
    assert "-max_tokens_capture: 256" in page and "+max_tokens_capture: 512" in page  # the diff


def test_the_detail_page_refuses_a_document_of_another_service(admin: User) -> None:
    _manifest(admin)
    other = _yaml().replace(SERVICE, "another")
    response = client_for(admin).post(_detail(), {"document": other})
    assert response.status_code == 200
    assert "This page edits chat-staging" in response.content.decode()
    assert not InstrumentationManifest.objects.filter(service="another").exists()


def test_export_gives_the_yaml_that_reimports(admin: User) -> None:
    _manifest(admin)
    client = client_for(admin)
    response = client.get(reverse("manifest_export", args=[SERVICE]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml"
    assert f'filename="{SERVICE}-v1.yaml"' in response["Content-Disposition"]
    exported = response.content.decode()
    again = client.post(_detail(), {"document": exported})
    assert again.status_code == 302
    assert InstrumentationManifest.objects.get(service=SERVICE).version == 2
    first, second = ManifestVersion.objects.order_by("version")
    assert {**first.document, "version": 0} == {**second.document, "version": 0}


def test_the_schema_is_served_to_anyone_signed_in(auditor: User) -> None:
    response = client_for(auditor).get(reverse("manifest_schema"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/schema+json"
    assert response.json()["title"] == "Scope Web instrumentation manifest"


# --- ingest keys -----------------------------------------------------------------------------


def test_a_new_key_is_shown_once_works_and_stops_working_once_revoked(admin: User) -> None:
    _manifest(admin, rate=1.0)
    client = client_for(admin)
    assert client.get(reverse("ingest_token_create", args=[SERVICE])).status_code == 405
    response = client.post(reverse("ingest_token_create", args=[SERVICE]), {"name": "staging"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = IngestToken.objects.get(name="staging")
    text = response.content.decode()
    start = text.index('<code id="new-key">') + len('<code id="new-key">')
    key = text[start : text.index("</code>", start)]
    assert key.startswith(token.prefix) and IngestToken.hash_key(key) == token.key_sha256
    assert "curl -X POST http://testserver/api/ingest/v1/traces" in text
    # shown once: the page never shows it again
    assert key not in client.get(_detail()).content.decode()

    assert _ingest(key).status_code == 202
    assert IngestedRequest.objects.filter(otel_trace_id=TRACE_A).exists()

    revoke = reverse("ingest_token_revoke", args=[SERVICE, token.pk])
    assert client.get(revoke).status_code == 405
    assert client.post(revoke).status_code == 302
    assert _ingest(key).status_code == 401


def test_a_key_needs_a_name(admin: User) -> None:
    _manifest(admin)
    client = client_for(admin)
    response = client.post(reverse("ingest_token_create", args=[SERVICE]), {"name": " "})
    assert response.status_code == 302 and not IngestToken.objects.exists()
    assert "Give the token a name" in client.get(_detail()).content.decode()


# --- forensic windows ------------------------------------------------------------------------


def test_a_window_is_approved_by_another_admin_only(admin: User) -> None:
    manifest = _manifest(admin)
    client = client_for(admin)
    response = client.post(
        reverse("forensic_window_request", args=[SERVICE]),
        {"start": "2030-01-02T10:00", "end": "2030-01-02T12:30", "reason": "incident 42"},
    )
    assert response.status_code == 302
    window = ForensicWindow.objects.get()
    assert window.start == datetime(2030, 1, 2, 10, 0, tzinfo=UTC)  # datetime-local read as UTC
    assert window.end == datetime(2030, 1, 2, 12, 30, tzinfo=UTC)
    approve = reverse("forensic_window_approve", args=[SERVICE, window.pk])
    assert client.get(approve).status_code == 405

    assert client.post(approve).status_code == 302
    window.refresh_from_db()
    assert window.approved_at is None
    assert "Another admin must approve" in client.get(_detail()).content.decode()

    second = make_user("adele", "admin")
    assert client_for(second).post(approve).status_code == 302
    window.refresh_from_db()
    manifest.refresh_from_db()
    assert window.approved_by == second and manifest.version == 2
    page = client_for(second).get(_detail()).content.decode()
    assert "forensic-approval" in page and "scheduled" in page


def test_a_window_that_ends_before_it_starts_is_refused(admin: User) -> None:
    _manifest(admin)
    client = client_for(admin)
    client.post(
        reverse("forensic_window_request", args=[SERVICE]),
        {"start": "2030-01-02T10:00", "end": "2030-01-02T09:00", "reason": "oops"},
    )
    assert not ForensicWindow.objects.exists()
    assert "must end after it starts" in client.get(_detail()).content.decode()


# --- who reaches what; the operations page ---------------------------------------------------


def test_reviewers_and_auditors_may_not_reach_the_manifest_pages(
    admin: User, reviewer: User, auditor: User
) -> None:
    _manifest(admin)
    for user in (reviewer, auditor):
        client = client_for(user)
        for url in (
            reverse("manifest_list"),
            reverse("manifest_create"),
            _detail(),
            reverse("manifest_export", args=[SERVICE]),
        ):
            assert client.get(url).status_code == 403, url
        assert client.post(reverse("ingest_token_create", args=[SERVICE])).status_code == 403
    assert not IngestToken.objects.exists()


def _sampled(admin: User, n: int = 3) -> InstrumentationManifest:
    manifest = _manifest(admin)
    batch = IngestBatch.objects.create(
        manifest=manifest, via="json", path="ingest/x.json", records=n, bytes=3000 * n
    )
    for i in range(n):
        IngestedRequest.objects.create(
            manifest=manifest, batch=batch, otel_trace_id=f"{i:032x}", position=i,
            sample_rate=0.01, sample_reason="default rate", manifest_version=1,
            overhead_ms=1.0 + i,
        )  # fmt: skip
    return manifest


def test_reviewers_see_the_operations_page_with_plots(admin: User, reviewer: User) -> None:
    client = client_for(reviewer)
    empty = client.get(reverse("operations"))
    assert empty.status_code == 200 and "<svg" not in empty.content.decode()
    _sampled(admin)
    response = client.get(reverse("operations"))
    assert response.status_code == 200
    text = response.content.decode()
    assert text.count("<svg") >= 6 and "Tracer overhead" in text
    assert "Operations" in text and reverse("manifest_list") not in text  # no Tracing link
    week = client.get(reverse("operations"), {"range": "7d", "manifest": SERVICE})
    assert week.status_code == 200 and "<svg" in week.content.decode()


def test_the_operations_figures(admin: User) -> None:
    _sampled(admin, n=3)
    report = operations_report(service=SERVICE)
    latest = report.buckets[-1]
    assert report.requests == 3 and latest.requests == 3
    assert latest.trace_kb == pytest.approx(3000 / 1024)
    assert latest.overhead_p50 == pytest.approx(2.0) and latest.overhead_p90 == pytest.approx(2.8)
    assert report.pending_requests == 3 and latest.queue_depth == 3
    assert report.storage.received_bytes == 9000 and report.storage.level == "ok"


def test_analysed_requests_give_tokens_and_stored_bytes_and_link_their_trace(
    admin: User,
) -> None:
    manifest = _sampled(admin, n=3)
    run = make_run(
        sae=SaeRecord.objects.get(name="tiny"),
        stream_manifest=manifest,
        stream_day=timezone.now().astimezone(UTC).date(),
        summary={"bytes_stored": 60_000},
    )
    requests = list(IngestedRequest.objects.order_by("position"))
    traces = [make_trace(run, position=i, tokens=tokens) for i, tokens in enumerate((6, 10))]
    for request, trace in zip(requests, traces, strict=False):
        IngestedRequest.objects.filter(pk=request.pk).update(trace=trace)
    report = operations_report(service=SERVICE)
    assert report.buckets[-1].tokens_mean == pytest.approx(8.0)
    assert report.storage.stream_requests == 2
    assert report.storage.stored_per_request == pytest.approx(30_000)
    page = client_for(admin).get(_detail()).content.decode()
    assert f'href="{reverse("trace_detail", args=[traces[0].pk])}"' in page


def test_the_storage_projection_names_the_threshold_it_crosses(admin: User, settings: Any) -> None:
    _sampled(admin)
    settings.STORAGE_PRICE_GB_MONTH = 1e8  # 9 KB a day, at a price that crosses both
    report = operations_report()
    assert report.storage.level == "alert"
    page = client_for(admin).get(reverse("operations")).content.decode()
    assert 'id="cost-alert"' in page and "$2500" in page

    old = timezone.now() - timedelta(days=3)
    IngestBatch.objects.update(received_at=old)
    IngestedRequest.objects.update(received_at=old)
    assert operations_report().requests == 0
    assert operations_report(span="7d").requests == 3
