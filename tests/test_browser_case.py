"""The audit story in a real browser, on a real run of Gemma 3 270M with the shipped SAE.

A flagged trace under the UK profile (four-eyes sign-off) waits in the triage queue. The reviewer
who finds it opens a case from the queue with the keyboard, adds a second piece of evidence from
the case page, writes the executive summary and asks for sign-off; her own sign-off is refused.
A second reviewer signs it off; a real worker generates and signs the report; the auditor finds
the case, downloads the PDF and verifies it on the verify page, and ``pdfsig`` accepts it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scopeweb.accounts.actor import Actor
from tests.browser_kit import Story, make_story, needs_chromium, orm, screenshots, sign_in, sign_out
from tests.factories import PASSWORD, make_user
from traces.services.saes import shipped_sae_folders

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_chromium,
    pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet"),
]
REPORT_TIMEOUT_MS = 180_000


@pytest.fixture
def uk_story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Story:
    """The flagged trace, a watched feature that trips on it, the cast, and a signing key that
    the worker process (started after this fixture) reads from the environment."""
    from reports.pdf.signing import dev_key_create
    from traces.models import SaeRecord
    from traces.services.annotations import annotation_save

    story = make_story("UK")
    make_user("rob", "reviewer")
    make_user("audrey", "auditor")
    annotation_save(
        sae=SaeRecord.objects.get(name=story.sae_name),
        index=story.feature,
        actor=Actor.command(),
        values={"label": "asks to ignore instructions", "tags": ["jailbreak"],
                "watch_threshold": story.threshold},
    )  # fmt: skip
    key = tmp_path / "signing" / "key.p12"
    dev_key_create(key, common_name="Scope Web browser test")
    monkeypatch.setenv("SCOPEWEB_SIGNING_P12", str(key))
    monkeypatch.delenv("SCOPEWEB_SIGNING_P12_PASSPHRASE", raising=False)
    monkeypatch.delenv("SCOPEWEB_TSA_URL", raising=False)
    settings.SIGNING_P12_PATH = key
    return story


def test_case_story(
    uk_story: Story, celery_worker_process: Any, live_server: Any, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = live_server.url
    save = screenshots("case")
    story = uk_story

    def shot(name: str) -> None:
        save(page, name)

    # Rita finds the flagged trace in the triage queue and opens a case with `c`.
    sign_in(page, base, "rita", PASSWORD)
    page.click("nav a:has-text('Triage')")
    expect(page.locator(".triage-card h2")).to_contain_text(f"Trace {story.trace_id}:")
    shot("triage")
    with page.expect_navigation():
        page.keyboard.press("c")
    expect(page.locator("h1")).to_contain_text("Case ")
    case_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    expect(page.locator("#case-state")).to_have_text("Open")
    expect(page.locator("#evidence article.evidence")).to_have_count(1)
    expect(page.locator("#evidence")).to_contain_text(f"Trace {story.trace_id}")
    expect(page.locator(f"#evidence a.feature-chip:has-text('#{story.feature}')")).to_be_visible()

    # A second piece of evidence from the case page: the token where the feature first fires.
    page.fill("#evidence-form input[name=trace]", str(story.trace_id))
    page.fill("#evidence-form input[name=token_start]", str(story.token))
    page.fill("#evidence-form input[name=token_end]", str(story.token + 1))
    page.fill("#evidence-form [name=features]", str(story.feature))
    page.fill("#evidence-form [name=note]", "The peak token of the watched feature.")
    with page.expect_navigation():
        page.click("#evidence-form button[type=submit]")
    expect(page.locator("#evidence article.evidence")).to_have_count(2)

    # The executive summary, then review, then ask for sign-off.
    page.click(f"a[href='/cases/{case_id}/edit/']")
    summary = (
        f"The prompt asks the model to ignore its instructions; feature {story.feature} fires "
        "on it. Evidence: the whole prompt and the peak token."
    )
    page.fill("#id_summary", summary)
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    with page.expect_navigation():
        page.click("#case-actions button[value=in_review]")
    expect(page.locator("#case-state")).to_have_text("In review")
    with page.expect_navigation():
        page.click("#case-actions button[value=awaiting_sign_off]")
    expect(page.locator("#case-state")).to_have_text("Awaiting sign-off")
    shot("awaiting")

    # Four-eyes: the opener's own sign-off is refused with the reason.
    if page.locator("#sign-off-form").count():
        page.fill("#sign-off-form textarea", "I opened it and I approve it.")
        with page.expect_navigation():
            page.click("#sign-off-form button[type=submit]")
        expect(page.locator("body")).to_contain_text("four-eyes")
        expect(page.locator("#case-state")).to_have_text("Awaiting sign-off")
    sign_out(page)

    # Rob, a second reviewer, signs it off; the worker makes the signed report.
    sign_in(page, base, "rob", PASSWORD)
    page.goto(f"{base}/cases/{case_id}/")
    page.fill("#sign-off-form textarea", "I checked both pieces of evidence against the trace.")
    with page.expect_navigation():
        page.click("#sign-off-form button[type=submit]")
    expect(page.locator("#case-state")).to_have_text("Signed off")
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.locator("#evidence-form")).to_have_count(0)
    download = page.locator("#report a:has-text('Download the signed PDF')")
    for _ in range(REPORT_TIMEOUT_MS // 2000):
        if download.count():
            break
        page.wait_for_timeout(2000)
        page.reload()
    expect(download).to_be_visible()
    shot("signed-off")
    sign_out(page)

    # Audrey, the auditor, finds the case, downloads the report and verifies it.
    sign_in(page, base, "audrey", PASSWORD)
    page.click("nav a:has-text('Cases')")
    with page.expect_navigation():
        page.click(f"a[href='/cases/{case_id}/']")
    expect(page.locator("#case-state")).to_have_text("Signed off")
    with page.expect_download() as info:
        page.click("#report a:has-text('Download the signed PDF')")
    pdf = tmp_path / "report.pdf"
    info.value.save_as(pdf)
    shot("auditor-case")

    def issued() -> str:
        from reports.models import CaseReport

        return CaseReport.objects.get(case_id=case_id).sha256

    assert hashlib.sha256(pdf.read_bytes()).hexdigest() == orm(issued)
    page.goto(f"{base}/reports/verify/")
    page.set_input_files("#verify-form input[type=file]", str(pdf))
    with page.expect_navigation():
        page.click("#verify-form button[type=submit]")
    result = page.locator("#verify-result")
    expect(result).to_contain_text(f"case {case_id}")
    expect(result.locator("dd").first).to_have_text("yes")
    shot("verified")

    if shutil.which("pdfsig"):
        checked = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True, check=False)
        assert "Signature is Valid." in checked.stdout, checked.stdout

    def audited() -> list[str]:
        from scopeweb.audit.models import AuditEvent

        return list(
            AuditEvent.objects.filter(object_type="auditcase", object_id=str(case_id))
            .order_by("id")
            .values_list("action", flat=True)
        )

    actions = orm(audited)
    for action in ("case.open", "case.evidence_add", "case.transition", "case.sign_off"):
        assert action in actions, actions
