"""Controlled exports: request, GDPR review, the build in the worker, the single-use link."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from governance.models import Export, ExportState
from governance.services.exports import (
    ExportRefused,
    LinkRefused,
    export_decide,
    export_download,
    export_execute,
    export_link_issue,
    export_request,
)
from reports.models import AuditCase, CaseComment, CaseReport, CaseState, Evidence
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.jobs.services import job_create
from scopeweb.retention.models import RetentionProfile
from tests.conftest import client_for, wait_for_job
from tests.factories import make_user
from tests.traces.conftest import import_prompt_set
from traces.bundle.format import CHUNK_PARTS, chunk_name
from traces.models import AnalysisRun
from traces.services.runs import run_execute, run_start
from traces.services.saes import sae_register_shipped, shipped_sae_folders

pytestmark = pytest.mark.django_db
EMAIL = "jane.doe@example.com"
PROMPTS = [
    f"Please forward the invoice to {EMAIL} before Friday.",
    "Paris is the capital of France.",
]
needs_sae = pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet")


def real_run(user: User, profile: str = "US") -> AnalysisRun:
    prompt_set = import_prompt_set(user, PROMPTS, profile=profile, name="export prompts")
    run = run_start(
        actor=Actor.command(), prompt_set=prompt_set, sae=sae_register_shipped()[0], queue=False
    )
    run_execute(run.job_id)
    run.refresh_from_db()
    assert run.job.state == JobState.SUCCEEDED and run.traces.count() == len(PROMPTS)
    return run


def a_case(profile: str, opener: User, **fields: Any) -> AuditCase:
    return AuditCase.objects.create(
        title="Data leak attempt",
        profile=RetentionProfile.objects.get(code=profile),
        opened_by=opener,
        description=f"The user asked to mail everything to {EMAIL}.",
        summary="Nothing was sent.",
        **fields,
    )


def built(export: Export) -> Export:
    """Run the worker's task body, as the task would."""
    assert export.job_id is not None
    export_execute(export.job_id)
    export.refresh_from_db()
    return export


def zip_of(export: Export) -> zipfile.ZipFile:
    with default_storage.open(export.artifact, "rb") as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == export.sha256 and len(data) == export.size_bytes
    return zipfile.ZipFile(io.BytesIO(data))


def check_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The manifest lists every other file with its true sha256 and size."""
    manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(archive.namelist()) - {"manifest.json"}
    for name, entry in listed.items():
        data = archive.read(name)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"], name
    return manifest


def actions(export: Export) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="export", object_id=str(export.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- a real run (Gemma 3 270M with the shipped SAE) ------------------------------------------


@needs_sae
@pytest.mark.model
def test_us_run_export_is_built_redacted_and_fetched_once(reviewer: User) -> None:
    run = real_run(reviewer)
    export = export_request(
        kind="run",
        target_id=run.pk,
        actor=Actor.command(reviewer),
        purpose="Share with the vendor's red team.",
    )
    assert export.state == ExportState.QUEUED and export.job is not None
    assert export.expires_at is not None and export.expires_at > timezone.now()

    export = built(export)

    assert export.state == ExportState.READY, export.job and export.job.error
    assert Job.objects.get(export=export).state == JobState.SUCCEEDED
    assert export.artifact.startswith(f"exports/{export.pk}/")
    archive = zip_of(export)
    manifest = check_manifest(archive)
    assert manifest["what"] == {"kind": "run", "id": run.pk, "name": export.target_repr}
    assert manifest["requested_by"] == reviewer.username
    assert manifest["profile"]["code"] == "US"
    assert manifest["source"]["run_manifest_sha256"] == run.manifest_sha256
    assert "redaction_report.json" not in archive.namelist()  # US: no documentation asked
    # The prompt with an email is exported redacted (US stores it as given).
    lines = [json.loads(line) for line in archive.read("prompts.jsonl").decode().splitlines()]
    assert [line["prompt_position"] for line in lines] == [0, 1]
    assert EMAIL not in archive.read("prompts.jsonl").decode()
    assert "[EMAIL]" in lines[0]["text"] and lines[0]["redacted"] == {"EMAIL": 1}
    assert lines[0]["redacted_before_storage"] == {}  # US stores text as given
    assert export.redaction_report["before_storage"] == {"items": 0, "counts": {}}
    assert lines[1]["text"] == PROMPTS[1]
    # The bundle: the run's manifest and features files byte for byte; the tokens file with the
    # ids of the redacted tokens masked (a token id spells its text), everything else the same.
    assert (
        archive.read("run/manifest.json")
        == default_storage.open(f"{run.artifact_prefix}/manifest.json", "rb").read()
    )
    stored = {
        part: default_storage.open(chunk_name(run.artifact_prefix, 0, part), "rb").read()
        for part in CHUNK_PARTS
    }
    assert archive.read("run/chunk-00000.features.parquet") == stored["features"]
    exported = pq.read_table(io.BytesIO(archive.read("run/chunk-00000.tokens.parquet")))
    original = pq.read_table(io.BytesIO(stored["tokens"]))
    ids, before = exported.column("token_id").to_pylist(), original.column("token_id").to_pylist()
    masked = [i for i, value in enumerate(ids) if value == -1]
    assert masked and len(masked) == manifest["source"]["masked_token_ids"]
    first = run.traces.get(prompt__position=0)
    assert all(first.row < i < first.row + first.tokens for i in masked)  # in the email's trace
    assert [v for i, v in enumerate(before) if i not in masked] == [
        v for i, v in enumerate(ids) if i not in masked
    ]
    assert exported.column("l0").to_pylist() == original.column("l0").to_pylist()
    assert export.redaction_report["counts"] == {"EMAIL": 1}

    # The link: shown once, to the requester, on the page; then single use.
    client = client_for(reviewer)
    page = client.get(reverse("export_detail", args=[export.pk]))
    assert page.status_code == 200 and b"shown this once" in page.content
    link = page.context["link"]
    assert link and client.get(reverse("export_detail", args=[export.pk])).context["link"] == ""
    export.refresh_from_db()
    assert export.link_sha256 and export.link_sha256 not in link
    token = link.rstrip("/").rsplit("/", 1)[-1]
    assert hashlib.sha256(token.encode()).hexdigest() == export.link_sha256
    response = client.get(reverse("export_download", args=[token]))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert hashlib.sha256(body).hexdigest() == export.sha256
    again = client.get(reverse("export_download", args=[token]))
    assert again.status_code == 410 and b"This link was used at" in again.content
    export.refresh_from_db()
    assert export.state == ExportState.DOWNLOADED and export.downloaded_by == reviewer
    assert actions(export) == [
        "export.request",
        "export.build",
        "export.link_issue",
        "export.download",
    ]

    # A case citing the email's trace: its tokens are exported redacted token by token, still
    # aligned with the activations, and its signed report travels as stored.
    case = a_case("US", reviewer, state=CaseState.SIGNED_OFF)
    Evidence.objects.create(
        case=case, trace=first, token_start=1, token_end=first.tokens, added_by=reviewer,
        token_text=f"the invoice to {EMAIL}", note="Mail address in the prompt.",
    )  # fmt: skip
    pdf = b"%PDF-1.7 stand-in for the signed report"
    default_storage.save(f"reports/case-{case.pk}/report.pdf", ContentFile(pdf))
    CaseReport.objects.create(
        case=case, artifact=f"reports/case-{case.pk}/report.pdf", size_bytes=len(pdf),
        sha256=hashlib.sha256(pdf).hexdigest(), signer_subject="test",
    )  # fmt: skip
    export = built(
        export_request(kind="case", target_id=case.pk, actor=Actor.command(reviewer), purpose="x")
    )
    archive = zip_of(export)
    check_manifest(archive)
    assert archive.read("report.pdf") == pdf
    tokens = json.loads(archive.read(f"traces/trace-{first.pk}.json"))["tokens"]
    assert len(tokens) == first.tokens
    assert EMAIL not in "".join(t["text"] for t in tokens)
    assert "[EMAIL]" in [t["text"] for t in tokens]
    assert {t["redacted"] for t in tokens} == {None, "EMAIL"}
    assert all(t["features"] for t in tokens[1:])  # the activations stay with their tokens
    assert json.loads(archive.read("case.json"))["evidence"][0]["token_text"] == (
        "the invoice to [EMAIL]"
    )


# --- cases (no engine needed) -----------------------------------------------------------------


def test_fr_case_export_carries_its_redaction_report(reviewer: User) -> None:
    case = a_case("FR", reviewer)
    CaseComment.objects.create(case=case, author=reviewer, body=f"Ask {EMAIL} or 192.168.10.20.")
    export = built(
        export_request(
            kind="case", target_id=case.pk, actor=Actor.command(reviewer), purpose="CNIL inquiry."
        )
    )
    assert export.state == ExportState.READY
    archive = zip_of(export)
    manifest = check_manifest(archive)
    assert {"case.json", "redaction_report.json", "manifest.json"} == set(archive.namelist())
    report = json.loads(archive.read("redaction_report.json"))
    assert report == export.redaction_report
    assert report["counts"] == {"EMAIL": 2, "IP_ADDRESS": 1}
    assert {d["name"] for d in report["detectors"]} and report["engine"]["presidio_analyzer"]
    assert manifest["redaction"]["report"] == "redaction_report.json"
    body = json.loads(archive.read("case.json"))
    assert EMAIL not in archive.read("case.json").decode()
    assert body["description"] == "The user asked to mail everything to [EMAIL]."
    assert body["comments"][0]["body"] == "Ask [EMAIL] or [IP_ADDRESS]."
    assert body["comments"][0]["author"] == reviewer.username


def test_uk_export_needs_another_admins_approval(
    admin: User, reviewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    case = a_case("UK", reviewer)
    with django_capture_on_commit_callbacks() as queued:
        export = export_request(
            kind="case", target_id=case.pk, actor=Actor.command(admin), purpose="ICO request"
        )
    assert export.state == ExportState.AWAITING_APPROVAL and export.job is None
    assert queued == []  # nothing is built before the review
    with pytest.raises(ExportRefused, match="Four-eyes"):
        export_decide(export, approve=True, note="", actor=Actor.command(admin))
    with pytest.raises(PermissionDenied):
        export_decide(export, approve=True, note="", actor=Actor.command(reviewer))
    # Through the page too: the requester sees no form and the service refuses a forged POST.
    page = client_for(admin).get(reverse("export_detail", args=[export.pk]))
    assert page.context["decision_form"] is None
    forged = client_for(admin).post(
        reverse("export_decide", args=[export.pk]), {"decision": "approve"}, follow=True
    )
    assert b"Four-eyes" in forged.content
    export.refresh_from_db()
    assert export.state == ExportState.AWAITING_APPROVAL

    other = make_user("adam", "admin")
    with django_capture_on_commit_callbacks() as queued:
        response = client_for(other).post(
            reverse("api_export_approve", args=[export.pk]), {"note": "lawful basis checked"}
        )
    assert response.status_code == 200 and response.json()["state"] == "queued"
    assert len(queued) == 1  # the build, sent once the approval commits
    export.refresh_from_db()
    assert export.decided_by == other and export.job is not None
    assert export.job.kind == JobKind.EXPORT
    export = built(export)
    assert export.state == ExportState.READY
    manifest = check_manifest(zip_of(export))
    assert manifest["approved_by"] == "adam"
    assert "redaction_report.json" not in zip_of(export).namelist()
    # A second decision is refused: it is no longer awaiting approval.
    again = client_for(other).post(reverse("api_export_refuse", args=[export.pk]), {"note": "x"})
    assert again.status_code == 409
    assert actions(export) == ["export.request", "export.approve", "export.build"]


def test_refused_uk_export_never_builds(admin: User, reviewer: User) -> None:
    case = a_case("UK", reviewer)
    export = export_request(
        kind="case", target_id=case.pk, actor=Actor.command(reviewer), purpose="press"
    )
    with pytest.raises(ValidationError) as missing:
        export_decide(export, approve=False, note=" ", actor=Actor.command(admin))
    assert "note" in missing.value.message_dict
    refused = export_decide(
        export, approve=False, note="No lawful basis.", actor=Actor.command(admin)
    )
    assert refused.state == ExportState.REFUSED and refused.job is None
    # Even a job pointed at it by hand does not build it.
    job = job_create(kind=JobKind.EXPORT, title="forced", created_by=admin, params={})
    Export.objects.filter(pk=export.pk).update(job=job)
    assert export_execute(job.pk) is None
    export.refresh_from_db()
    job.refresh_from_db()
    assert export.state == ExportState.REFUSED and not export.artifact
    assert job.state == JobState.FAILED and "refused" in job.error.lower()
    assert not default_storage.exists(f"exports/{export.pk}")
    assert actions(export) == ["export.request", "export.refuse"]


def _ready_case_export(reviewer: User) -> tuple[Export, str]:
    case = a_case("US", reviewer, state=CaseState.SIGNED_OFF)
    export = built(
        export_request(
            kind="case", target_id=case.pk, actor=Actor.command(reviewer), purpose="audit"
        )
    )
    token = export_link_issue(export, actor=Actor.command(reviewer))
    assert token is not None
    return export, token


def test_link_is_issued_once_and_only_to_the_requester(reviewer: User, admin: User) -> None:
    case = a_case("US", reviewer)
    export = built(
        export_request(kind="case", target_id=case.pk, actor=Actor.command(reviewer), purpose="x")
    )
    assert (
        export_link_issue(export, actor=Actor.command(admin)) is None
    )  # an admin sees it, gets no link
    token = export_link_issue(export, actor=Actor.command(reviewer))
    assert token and len(token) >= 43
    assert export_link_issue(export, actor=Actor.command(reviewer)) is None
    export.refresh_from_db()
    assert export.link_expires_at is not None
    hours = (export.link_expires_at - timezone.now()).total_seconds() / 3600
    assert 23.9 < hours <= 24


def test_second_use_of_a_link_is_refused(reviewer: User, auditor: User) -> None:
    export, token = _ready_case_export(reviewer)
    found = export_download(
        token, actor=Actor.command(auditor)
    )  # passed on to an auditor, who uses it
    with found.handle:
        assert hashlib.sha256(found.handle.read()).hexdigest() == export.sha256
    with pytest.raises(LinkRefused, match="used at") as refused:
        export_download(token, actor=Actor.command(reviewer))
    assert refused.value.status == 410
    response = client_for(reviewer).get(reverse("api_export_download", args=[token]))
    assert response.status_code == 410 and "used at" in response.json()["detail"]
    event = AuditEvent.objects.get(action="export.download", object_id=str(export.pk))
    assert event.actor == auditor.username


def test_late_use_of_a_link_is_refused(reviewer: User) -> None:
    export, token = _ready_case_export(reviewer)
    Export.objects.filter(pk=export.pk).update(
        link_expires_at=timezone.now() - timedelta(minutes=1)
    )
    response = client_for(reviewer).get(reverse("export_download", args=[token]))
    assert response.status_code == 410 and b"This link expired at" in response.content
    export.refresh_from_db()
    assert export.state == ExportState.READY and export.downloaded_at is None
    assert not AuditEvent.objects.filter(action="export.download").exists()


def test_unknown_link_is_404_and_anonymous_users_sign_in_first(reviewer: User) -> None:
    url = reverse("export_download", args=["not-a-real-token"])
    assert client_for(reviewer).get(url).status_code == 404
    assert client_for(None).get(url).status_code == 302
    api = reverse("api_export_download", args=["not-a-real-token"])
    assert client_for(reviewer).get(api).status_code == 404


def test_racing_downloads_let_only_one_through(reviewer: User) -> None:
    export, token = _ready_case_export(reviewer)
    # The other download won between this one's checks and its update.
    Export.objects.filter(pk=export.pk).update(
        state=ExportState.DOWNLOADED, downloaded_at=timezone.now()
    )
    with pytest.raises(LinkRefused, match="used at"):
        export_download(token, actor=Actor.command(reviewer))


# --- access --------------------------------------------------------------------------------


def test_auditor_and_outsider_cannot_export(auditor: User, outsider: User, reviewer: User) -> None:
    case = a_case("US", reviewer, state=CaseState.SIGNED_OFF)  # the auditor may read it
    for user in (auditor, outsider):
        with pytest.raises(PermissionDenied):
            export_request(
                kind="case", target_id=case.pk, actor=Actor.command(user), purpose="mine"
            )
        data = {"kind": "case", "target_id": case.pk, "purpose": "mine"}
        assert client_for(user).post(reverse("export_create"), data).status_code == 403
        assert client_for(user).post(reverse("api_exports"), data).status_code == 403
        assert client_for(user).get(reverse("export_list")).status_code == 403
    assert not Export.objects.exists()


def test_bad_requests_name_the_field(reviewer: User) -> None:
    client = client_for(reviewer)
    cases = [
        ({"kind": "prompt_set", "target_id": 1, "purpose": "x"}, "kind"),
        ({"kind": "run", "target_id": 999999, "purpose": "x"}, "target_id"),
        ({"kind": "case", "target_id": 999999, "purpose": "x"}, "target_id"),
        ({"kind": "case", "target_id": 1, "purpose": ""}, "purpose"),
    ]
    for data, field in cases:
        response = client.post(reverse("api_exports"), data)
        assert response.status_code == 400 and field in response.json(), data
    page = client.post(reverse("export_create"), cases[1][0])
    assert page.status_code == 200 and b"There is no run 999999" in page.content


def test_unfinished_run_cannot_be_exported(reviewer: User) -> None:
    from tests.factories import make_prompt_set, make_sae

    run = run_start(
        actor=Actor.command(), prompt_set=make_prompt_set(), sae=make_sae(), queue=False
    )
    with pytest.raises(ValidationError, match="only a run that finished"):
        export_request(kind="run", target_id=run.pk, actor=Actor.command(reviewer), purpose="x")


def test_requesters_see_their_own_exports_and_admins_every_one(
    reviewer: User, second_reviewer: User, admin: User
) -> None:
    case = a_case("UK", reviewer)
    mine = export_request(
        kind="case", target_id=case.pk, actor=Actor.command(reviewer), purpose="mine"
    )
    assert (
        client_for(second_reviewer).get(reverse("export_detail", args=[mine.pk])).status_code == 404
    )
    assert client_for(second_reviewer).get(reverse("api_export", args=[mine.pk])).status_code == 404
    listed = client_for(second_reviewer).get(reverse("api_exports")).json()
    assert listed["results"] == [] if isinstance(listed, dict) else listed == []
    page = client_for(admin).get(reverse("export_list"))
    assert page.status_code == 200 and list(page.context["awaiting"]) == [mine]
    assert b"Approve" in page.content
    # The admin approves from the list.
    client_for(admin).post(
        reverse("export_decide", args=[mine.pk]), {"decision": "approve", "next": "list"}
    )
    mine.refresh_from_db()
    assert mine.state == ExportState.QUEUED and mine.decided_by == admin


def test_export_buttons_show_for_exporters_only(reviewer: User, auditor: User) -> None:
    case = a_case("US", reviewer, state=CaseState.SIGNED_OFF)
    url = reverse("case_detail", args=[case.pk])
    assert b"Export this case" in client_for(reviewer).get(url).content
    assert b"Export this case" not in client_for(auditor).get(url).content


def test_exports_are_in_the_openapi_schema(reviewer: User) -> None:
    schema = client_for(reviewer).get(reverse("api_schema"), {"format": "json"}).json()
    for path in (
        "/api/exports/",
        "/api/exports/{id}/",
        "/api/exports/{id}/approve/",
        "/api/exports/{id}/refuse/",
        "/api/exports/download/{token}/",
    ):
        assert path in schema["paths"], path


def test_finished_run_page_offers_the_export(reviewer: User) -> None:
    from tests.factories import make_run, make_sae

    run = make_run(sae=make_sae())
    page = client_for(reviewer).get(reverse("run_detail", args=[run.pk]))
    assert page.status_code == 200 and b"Export this run" in page.content
    assert b'name="target_id" value="%d"' % run.pk in page.content


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.model
def test_a_real_worker_builds_an_api_export(
    celery_worker_process: subprocess.Popen[bytes], reviewer: User
) -> None:
    case = a_case("FR", reviewer)
    client = client_for(reviewer)
    data = {"kind": "case", "target_id": case.pk, "purpose": "CNIL inquiry"}
    response = client.post(reverse("api_exports"), data)
    assert response.status_code == 201, response.content
    job = wait_for_job(str(response.json()["job"]))
    assert job.state == "succeeded", job.error
    first = client.get(reverse("api_export", args=[response.json()["id"]])).json()
    assert first["state"] == "ready" and first["link"] and first["redaction_report"]["counts"]
    second = client.get(reverse("api_export", args=[first["id"]])).json()
    assert second["link"] is None and second["link_issued"]
    download = client.get(first["link"])
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))  # type: ignore[attr-defined]
    assert "redaction_report.json" in archive.namelist()
    assert client.get(first["link"]).status_code == 410
