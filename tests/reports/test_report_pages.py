"""Downloading and verifying signed reports, on the pages and over the API, and who may."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from reports.models import CaseReport, CaseState
from reports.pdf.signing import default_passphrase_path, signing_key_load
from reports.services.reports import report_bytes, report_generate
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.jobs.models import Job, JobKind
from tests.conftest import client_for
from tests.reports.test_report_generate import (  # noqa: F401 (fixtures)
    PROMPTS,
    _tokenizer,
    dev_key,
    flip_one_byte,
    real_run,
    signed_case,
)
from traces.services.saes import shipped_sae_folders

pytestmark = pytest.mark.django_db
needs_sae = pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet")


def _report(reviewer: User, second_reviewer: User) -> CaseReport:
    run = real_run(reviewer, PROMPTS[:2])
    case = signed_case(reviewer, second_reviewer, run, evidence=1)
    return report_generate(case, actor=Actor.command(second_reviewer))


def _upload(data: bytes, name: str = "report.pdf") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/pdf")


@needs_sae
@pytest.mark.model
def test_auditor_downloads_and_verifies_a_report_and_an_outsider_is_refused(
    reviewer: User,
    second_reviewer: User,
    auditor: User,
    outsider: User,
    dev_key: Path,  # noqa: F811
) -> None:
    report = _report(reviewer, second_reviewer)
    data = report_bytes(report)
    case_id = report.case_id
    url = reverse("case_report_download", args=[case_id])
    auditor_client = client_for(auditor)

    answer = auditor_client.get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/pdf"
    assert b"".join(answer.streaming_content) == data  # type: ignore[attr-defined]
    assert f"case-{case_id}-report.pdf" in answer["Content-Disposition"]
    event = AuditEvent.objects.get(action="report.download")
    assert event.actor == auditor.username and event.detail["sha256"] == report.sha256
    assert client_for(outsider).get(url).status_code == 403
    assert client_for(None).get(url).status_code == 302

    # The case page's report panel offers the download.
    page = client_for(auditor).get(reverse("case_detail", args=[case_id])).content.decode()
    assert url in page and report.sha256 in page and "self-signed development key" in page

    # The verify page: the report, a tampered copy, something that is not a PDF, nothing.
    verify = reverse("report_verify")
    assert auditor_client.get(verify).status_code == 200
    page = auditor_client.post(verify, {"file": _upload(data)}).content.decode()
    assert "Valid signature on a report this deployment issued." in page
    assert f"case {case_id}" in page and "self-signed" in page
    page = auditor_client.post(verify, {"file": _upload(flip_one_byte(data))}).content.decode()
    assert "does NOT hold" in page
    page = auditor_client.post(verify, {"file": _upload(b"plain words", "x.txt")}).content.decode()
    assert "not a PDF" in page
    page = auditor_client.post(verify, {}).content.decode()
    assert "This field is required" in page or "Choose the PDF" in page
    verified = AuditEvent.objects.filter(action="report.verify").order_by("id")
    assert [e.detail["issued_here"] for e in verified] == [True, False, False]
    assert verified[0].object_id == str(case_id)
    assert client_for(outsider).get(verify).status_code == 403

    # The API: metadata, the PDF, verification.
    api = auditor_client.get(reverse("api_case_report", args=[case_id])).json()
    assert api["sha256"] == report.sha256 and api["self_signed"] is True
    pdf = auditor_client.get(reverse("api_case_report_pdf", args=[case_id]))
    assert b"".join(pdf.streaming_content) == data  # type: ignore[attr-defined]
    checked = auditor_client.post(reverse("api_report_verify"), {"file": _upload(data)}).json()
    assert checked["valid"] and checked["issued_here"] and checked["case"] == case_id
    assert checked["self_signed"] and checked["deployment_key"]
    bad = auditor_client.post(
        reverse("api_report_verify"), {"file": _upload(flip_one_byte(data))}
    ).json()
    assert not bad["valid"] and not bad["issued_here"]
    missing = auditor_client.post(reverse("api_report_verify"), {})
    assert missing.status_code == 400 and "file" in missing.json()
    assert (
        client_for(outsider).post(reverse("api_report_verify"), {"file": _upload(data)}).status_code
        == 403
    )


def test_a_case_without_report_answers_404_and_the_api_names_its_job(
    reviewer: User, auditor: User
) -> None:
    from tests.reports.conftest import make_case

    case = make_case(reviewer, state=CaseState.SIGNED_OFF)
    job = Job.objects.create(
        kind=JobKind.CASE_REPORT, title="r", params={"case_id": case.pk}, state="failed",
        error="Signing failed: bad key",
    )  # fmt: skip
    client = client_for(auditor)
    assert client.get(reverse("case_report_download", args=[case.pk])).status_code == 404
    answer = client.get(reverse("api_case_report", args=[case.pk]))
    assert answer.status_code == 404
    assert answer.json()["job"] == str(job.pk) and "bad key" in answer.json()["job_error"]
    page = client_for(reviewer).get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "Signing failed: bad key" in page and "Try again" in page


def test_generate_again_queues_a_report_job_for_a_signed_off_case_only(
    reviewer: User, auditor: User, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.reports.conftest import make_case

    signed = make_case(reviewer, state=CaseState.SIGNED_OFF)
    open_case = make_case(reviewer, state=CaseState.OPEN)
    client = client_for(reviewer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = client.post(reverse("case_report_generate", args=[signed.pk]))
    assert answer.status_code == 302 and len(callbacks) == 1
    assert Job.objects.filter(kind=JobKind.CASE_REPORT, params__case_id=signed.pk).count() == 1
    answer = client.post(reverse("case_report_generate", args=[open_case.pk]), follow=True)
    assert "only a signed-off case gets a report" in answer.content.decode()
    assert not Job.objects.filter(params__case_id=open_case.pk).exists()
    assert (
        client_for(auditor).post(reverse("case_report_generate", args=[signed.pk])).status_code
        == 403
    )


def test_init_signing_key_makes_a_self_signed_key_and_refuses_to_overwrite(
    settings: Any, tmp_path: Path
) -> None:
    settings.SIGNING_P12_PATH = tmp_path / "k" / "key.p12"
    settings.SIGNING_P12_PASSPHRASE = None
    call_command("init_signing_key", "--common-name", "Dev box")
    key = signing_key_load()
    assert key.self_signed and "Dev box" in key.subject
    assert default_passphrase_path(settings.SIGNING_P12_PATH).stat().st_mode & 0o077 == 0
    assert settings.SIGNING_P12_PATH.stat().st_mode & 0o077 == 0
    before = settings.SIGNING_P12_PATH.read_bytes()
    with pytest.raises(CommandError, match="--force"):
        call_command("init_signing_key")
    call_command("init_signing_key", "--if-missing")
    assert settings.SIGNING_P12_PATH.read_bytes() == before
    call_command("init_signing_key", "--force", "--common-name", "Second")
    assert "Second" in signing_key_load().subject

    # A passphrase from the environment is used, and none is written beside the key.
    settings.SIGNING_P12_PASSPHRASE = "from the environment"
    call_command("init_signing_key", "--force")
    assert not default_passphrase_path(settings.SIGNING_P12_PATH).exists()
    assert signing_key_load().self_signed
