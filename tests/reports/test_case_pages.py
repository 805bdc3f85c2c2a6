"""Case pages and the case API: the flow through the pages, immutability after sign-off in
the UI and the API, auditors' access to signed-off cases only, and evidence from the trace view
and from the triage queue."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from reports.models import AuditCase, CaseState, Evidence
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from tests.conftest import client_for
from tests.reports.conftest import make_case, store_trace
from traces.models import FeatureAnnotation, Trace, TriageReview

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_tokenizer")]
S = CaseState
QUEUE = "reports.services.sign_off.report_queue"


def _messages(page: Any) -> str:
    return " ".join(re.findall(r'<div class="flash[^"]*">(.*?)</div>', page.content.decode()))


def test_two_reviewers_take_a_case_from_open_to_signed_off_through_the_pages(
    django_capture_on_commit_callbacks: Any,
    reviewer: User,
    second_reviewer: User,
    stored_trace: Trace,
) -> None:
    rita, rob = client_for(reviewer), client_for(second_reviewer)
    FeatureAnnotation.objects.create(sae=stored_trace.run.sae, index=5, label="injection")
    made = rita.post(
        reverse("case_create"),
        {"title": "Injected instructions", "severity": "high", "profile": "UK",
         "assignees": [second_reviewer.pk]},
    )  # fmt: skip
    case = AuditCase.objects.get()
    assert made["Location"] == reverse("case_detail", args=[case.pk])
    detail = reverse("case_detail", args=[case.pk])
    rita.post(
        reverse("case_evidence_add", args=[case.pk]),
        {"trace": stored_trace.pk, "token_start": 1, "token_end": 4, "features": "5, 9",
         "note": "ignores its rules"},
    )  # fmt: skip
    evidence = Evidence.objects.get()
    page = rita.get(detail).content.decode()
    assert " Ignore all rules" in page and "ignores its rules" in page
    assert reverse("feature_detail", args=[stored_trace.run.sae.name, 5]) in page
    assert "#5 injection" in page
    manifest_sha = evidence.pins[f"{stored_trace.run.artifact_prefix}/manifest.json"]
    assert f'<code title="{manifest_sha}">{manifest_sha[:12]}…</code>' in page
    assert 'value="in_review"' in page and 'value="awaiting_sign_off"' not in page

    transition = reverse("case_transition", args=[case.pk])
    rita.post(transition, {"to": "in_review"})
    refused = rita.post(transition, {"to": "signed_off"}, follow=True)
    assert "a case is signed off by its sign-offs" in _messages(refused)
    edit = {"title": "Injected instructions", "severity": "high", "summary": "It obeys."}
    rita.post(reverse("case_edit", args=[case.pk]), edit)
    rita.post(transition, {"to": "awaiting_sign_off"})
    rob.post(reverse("case_comment", args=[case.pk]), {"body": "Looks right."})
    sign = reverse("case_sign_off", args=[case.pk])
    assert "four-eyes" in _messages(rita.post(sign, {"statement": "mine"}, follow=True))
    with mock.patch(QUEUE) as queue, django_capture_on_commit_callbacks(execute=True):
        rob.post(sign, {"statement": "I checked the tokens and the features."})
    case.refresh_from_db()
    assert case.state == S.SIGNED_OFF and queue.call_count == 1
    page = rob.get(detail).content.decode()
    assert "read-only" in page and "I checked the tokens" in page and "Looks right." in page
    for form in ("evidence-form", "sign-off-form", "case-actions", "/remove/"):
        assert form not in page
    history = re.findall(r"<td>(case\.[a-z_]+)</td>", page)
    assert history[:3] == ["case.open", "case.evidence_add", "case.view"]
    assert {"case.transition", "case.update", "case.comment", "case.sign_off"} <= set(history)


def test_signed_off_case_refuses_edits_in_the_ui_and_with_409_in_the_api(
    reviewer: User, second_reviewer: User, stored_trace: Trace
) -> None:
    case = make_case(reviewer, S.IN_REVIEW)
    evidence_url = reverse("api_case_evidence", args=[case.pk])
    api = client_for(reviewer)
    made = api.post(
        evidence_url, {"trace": stored_trace.pk, "token_start": 1, "token_end": 3},
        content_type="application/json",
    )  # fmt: skip
    assert made.status_code == 201 and made.json()["token_text"] == " Ignore all"
    AuditCase.objects.filter(pk=case.pk).update(state=S.SIGNED_OFF)
    evidence = Evidence.objects.get()
    web = [
        (reverse("case_edit", args=[case.pk]), {"title": "x", "severity": "low"}),
        (reverse("case_transition", args=[case.pk]), {"to": "in_review"}),
        (reverse("case_evidence_add", args=[case.pk]),
         {"trace": stored_trace.pk, "token_start": 1, "token_end": 2}),
        (reverse("case_evidence_remove", args=[case.pk, evidence.pk]), {}),
        (reverse("case_comment", args=[case.pk]), {"body": "late"}),
    ]  # fmt: skip
    for url, data in web:
        page = api.post(url, data, follow=True)
        assert "read-only" in _messages(page), url
    json = "application/json"
    calls = [
        api.patch(reverse("api_case", args=[case.pk]), {"title": "x"}, content_type=json),
        api.post(reverse("api_case_transition", args=[case.pk]), {"to": "closed", "reason": "r"},
                 content_type=json),
        api.post(evidence_url, {"trace": stored_trace.pk, "token_start": 1, "token_end": 2},
                 content_type=json),
        api.delete(reverse("api_case_evidence_item", args=[case.pk, evidence.pk])),
        api.post(reverse("api_case_comments", args=[case.pk]), {"body": "late"},
                 content_type=json),
        client_for(second_reviewer).post(reverse("api_case_sign_off", args=[case.pk]),
                                         {"statement": "s"}, content_type=json),
    ]  # fmt: skip
    for response in calls:
        assert response.status_code == 409, response.content
        assert "signed off and read-only" in response.json()["detail"]
    assert Evidence.objects.count() == 1 and not case.comments.exists()
    case.refresh_from_db()
    assert case.title == "Prompt injection" and case.state == S.SIGNED_OFF


def test_api_runs_the_state_machine_and_names_bad_input(
    django_capture_on_commit_callbacks: Any, reviewer: User, second_reviewer: User
) -> None:
    api, json = client_for(reviewer), "application/json"
    made = api.post(reverse("api_cases"), {"title": "API case", "profile": "US"}, content_type=json)
    assert made.status_code == 201 and made.json()["state"] == "open"
    pk = made.json()["id"]
    transition = reverse("api_case_transition", args=[pk])
    bad = api.post(transition, {"to": "awaiting_sign_off"}, content_type=json)
    assert bad.status_code == 409
    assert bad.json()["detail"].startswith("Cannot go from open to awaiting sign-off")
    assert api.post(transition, {"to": "nowhere"}, content_type=json).status_code == 400
    assert api.post(transition, {"to": "in_review"}, content_type=json).json()["next_states"] == [
        "awaiting_sign_off", "closed"
    ]  # fmt: skip
    nosummary = api.post(transition, {"to": "awaiting_sign_off"}, content_type=json)
    assert nosummary.status_code == 409 and "executive summary" in nosummary.json()["detail"]
    assert api.patch(reverse("api_case", args=[pk]), {"state": "signed_off"},
                     content_type=json).status_code == 400  # fmt: skip
    api.patch(reverse("api_case", args=[pk]), {"summary": "Done."}, content_type=json)
    api.post(transition, {"to": "awaiting_sign_off"}, content_type=json)
    sign = reverse("api_case_sign_off", args=[pk])
    with mock.patch(QUEUE), django_capture_on_commit_callbacks(execute=True):
        signed = client_for(second_reviewer).post(sign, {"statement": "ok"}, content_type=json)
    assert signed.status_code == 201 and signed.json()["case_state"] == "signed_off"
    bad_evidence = api.post(
        reverse("api_case_evidence", args=[pk]),
        {"trace": 999999, "token_start": 0, "token_end": 1}, content_type=json,
    )  # fmt: skip
    assert bad_evidence.status_code == 400 and "trace" in bad_evidence.json()
    assert reverse("api_cases") in api.get(reverse("api_schema")).content.decode()


def test_auditors_read_signed_off_cases_only_with_evidence_redacted(
    reviewer: User, auditor: User, stored_trace: Trace
) -> None:
    from reports.services.evidence import evidence_add

    signed = make_case(reviewer, S.IN_REVIEW)
    evidence_add(
        case=signed, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=4,
        note="Reported by carol@example.org",
    )  # fmt: skip
    AuditCase.objects.filter(pk=signed.pk).update(state=S.SIGNED_OFF)
    others = [make_case(reviewer, state) for state in (S.OPEN, S.IN_REVIEW, S.AWAITING_SIGN_OFF,
                                                       S.CLOSED)]  # fmt: skip
    client = client_for(auditor)
    listing = client.get(reverse("case_list")).content.decode()
    assert reverse("case_detail", args=[signed.pk]) in listing
    assert "signed-off cases only" in listing
    api_list = client.get(reverse("api_cases")).json()
    assert [c["id"] for c in api_list["results"]] == [signed.pk]
    for case in others:
        assert reverse("case_detail", args=[case.pk]) not in listing
        assert client.get(reverse("case_detail", args=[case.pk])).status_code == 404
        assert client.get(reverse("api_case", args=[case.pk])).status_code == 404
    page = client.get(reverse("case_detail", args=[signed.pk])).content.decode()
    assert "Ignore all rules" in page and "Shown redacted under profile US" in page
    assert "carol@example.org" not in page  # the note, as the profile redacts it
    assert (
        "carol@example.org"
        in client_for(reviewer).get(reverse("case_detail", args=[signed.pk])).content.decode()
    )
    assert reverse("trace_detail", args=[stored_trace.pk]) not in page  # auditors read no traces
    body = client.get(reverse("api_case", args=[signed.pk])).json()
    assert body["state"] == "signed_off" and len(body["evidence"]) == 1
    assert "carol@example.org" not in body["evidence"][0]["note"]  # the API redacts it too
    assert "[EMAIL]" in body["evidence"][0]["note"]
    assert body["next_states"] == []
    views = AuditEvent.objects.filter(action="case.view", object_id=str(signed.pk), actor="audrey")
    assert views.count() == 2
    refused = client.post(reverse("api_case_comments", args=[signed.pk]), {"body": "x"})
    assert refused.status_code == 403


def test_add_to_case_from_the_trace_view(reviewer: User, stored_trace: Trace) -> None:
    client = client_for(reviewer)
    trace_page = client.get(reverse("trace_detail", args=[stored_trace.pk])).content.decode()
    form_url = reverse("case_evidence_from_trace", args=[stored_trace.pk])
    assert f'hx-get="{form_url}?token=1' in trace_page
    assert "No case is open" in client.get(form_url).content.decode()
    case = make_case(reviewer, S.IN_REVIEW)
    make_case(reviewer, S.SIGNED_OFF)  # read-only: not offered
    fragment = client.get(form_url, {"token": "2", "feature": "5"}).content.decode()
    assert fragment.count("<option") == 1 and f'value="{case.pk}"' in fragment
    assert 'name="token_start" value="2"' in fragment and 'name="features" value="5"' in fragment
    done = client.post(
        form_url,
        {"case": case.pk, "token_start": 2, "token_end": 3, "features": "5", "note": "peak"},
        follow=True,
    )
    assert f"added to case {case.pk}" in _messages(done)
    evidence = Evidence.objects.get()
    assert (evidence.token_text, evidence.added_from, evidence.features) == (" all", "trace", [5])
    bad = client.post(form_url, {"case": case.pk, "token_start": 2, "token_end": 9}, follow=True)
    assert "has 5 tokens" in _messages(bad)


def test_open_a_case_from_the_triage_queue(reviewer: User, second_reviewer: User) -> None:
    trace = store_trace()
    FeatureAnnotation.objects.create(
        sae=trace.run.sae, index=5, label="injection", tags=["jailbreak"], watch_threshold=2.0
    )
    client = client_for(reviewer)
    queue = client.get(reverse("triage_queue")).content.decode()
    url = reverse("triage_open_case", args=[trace.pk])
    assert f'formaction="{url}"' in queue and 'aria-keyshortcuts="c"' in queue
    response = client.post(url, {"note": "obeys the injection"})
    case = AuditCase.objects.get()
    assert response["Location"] == reverse("case_detail", args=[case.pk])
    assert case.opened_by == reviewer and case.profile == trace.run.profile
    assert "feature 5 (injection)" in case.title
    evidence = case.evidence.get()
    assert (evidence.token_start, evidence.token_end, evidence.features) == (1, 5, [5])
    assert evidence.added_from == "triage" and evidence.note == "obeys the injection"
    review = TriageReview.objects.get()
    assert (review.trace, review.decision, review.reviewer) == (trace, "reviewed", reviewer)
    assert f"Opened case {case.pk}" in review.note
    again = client_for(second_reviewer).post(url, {}, follow=True)
    assert "already marked reviewed by rita" in _messages(again)
    assert AuditCase.objects.count() == 1  # all or nothing


def test_triage_case_for_a_trace_whose_artifacts_are_gone_opens_nothing(
    reviewer: User,
) -> None:
    trace = store_trace()
    from django.core.files.storage import default_storage

    default_storage.delete(f"{trace.run.artifact_prefix}/manifest.json")
    FeatureAnnotation.objects.create(
        sae=trace.run.sae, index=5, label="x", tags=["jailbreak"], watch_threshold=2.0
    )
    page = client_for(reviewer).post(reverse("triage_open_case", args=[trace.pk]), {}, follow=True)
    assert "No case opened" in _messages(page) and "no stored manifest" in _messages(page)
    assert not AuditCase.objects.exists() and not TriageReview.objects.exists()
