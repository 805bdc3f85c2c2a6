"""The gate pages: gates written as YAML with their versions and keys, a run's page (metrics,
bars, trace links, polling), decisions under four-eyes, the sign-off queue, the downloads and
the attestation check."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gates.models import Gate, GateDecision, GateRun, GateToken, GateVersion
from scopeweb.audit.models import AuditEvent
from tests.conftest import client_for
from tests.gates.page_kit import (
    GATE,
    gate_yaml_text,
    make_gate,
    make_gate_run,
    make_sae,
)

pytestmark = pytest.mark.django_db


def _detail(name: str = GATE) -> str:
    return reverse("gate_detail", args=[name])


# --- gates as YAML ---------------------------------------------------------------------------


def test_an_admin_creates_a_gate_from_yaml_on_the_page(admin: User) -> None:
    make_sae()
    client = client_for(admin)
    page = client.get(reverse("gate_new")).content.decode()
    # the example starts from the registered SAE, with three metrics and their thresholds
    assert "saes: [tiny]" in page and "anomaly_rate, max: 0.05" in page and "profile: UK" in page

    response = client.post(reverse("gate_new"), {"document": gate_yaml_text()})
    assert response.status_code == 302 and response["Location"] == _detail()
    gate = Gate.objects.get(name=GATE)
    assert gate.version == 1 and gate.profile.code == "US"
    assert GateVersion.objects.get(gate=gate).via == "web"
    listing = client.get(reverse("gate_list")).content.decode()
    assert GATE in listing and "anomaly_rate ≤ 0.05" in listing


def test_a_gate_file_is_imported(admin: User) -> None:
    make_sae()
    upload = SimpleUploadedFile("gate.yaml", gate_yaml_text().encode())
    response = client_for(admin).post(reverse("gate_new"), {"document": "", "file": upload})
    assert response.status_code == 302
    assert GateVersion.objects.get(gate__name=GATE).via == "import"


def test_bad_yaml_shows_the_line_keeps_the_text_and_stores_nothing(admin: User) -> None:
    typed = "name: g\nsaes: [tiny\nmetrics: []\n"
    response = client_for(admin).post(reverse("gate_new"), {"document": typed})
    assert response.status_code == 200
    text = response.content.decode()
    assert "not valid YAML" in text and "line 3" in text
    assert "saes: [tiny" in text  # the textarea keeps what was typed
    assert not Gate.objects.exists()


def test_a_schema_problem_names_its_field(admin: User) -> None:
    make_sae()
    response = client_for(admin).post(
        reverse("gate_new"), {"document": gate_yaml_text(anomaly_max=-1)}
    )
    text = response.content.decode()
    assert "does not match its schema" in text
    assert "<code>metrics.0.max</code>" in text and "less than the minimum" in text
    assert not Gate.objects.exists()


def test_a_check_against_the_registry_names_its_field(admin: User) -> None:
    typed = gate_yaml_text().replace("[tiny]", "[absent]")
    text = client_for(admin).post(reverse("gate_new"), {"document": typed}).content.decode()
    assert "not in the registry: absent" in text and "<code>saes</code>" in text
    assert not Gate.objects.exists()


def test_editing_makes_version_2_and_the_history_shows_the_diff(admin: User) -> None:
    make_gate(admin)
    client = client_for(admin)
    edit = reverse("gate_edit", args=[GATE])
    assert "name: safety-gate" in client.get(edit).content.decode()
    response = client.post(edit, {"document": gate_yaml_text(anomaly_max=0.08)})
    assert response.status_code == 302 and response["Location"] == _detail()
    assert Gate.objects.get(name=GATE).version == 2
    page = client.get(_detail()).content.decode()
    assert 'id="v2"' in page and 'id="v1"' in page
    assert "-  max: 0.05" in page and "+  max: 0.08" in page


def test_the_new_page_and_the_edit_page_keep_to_their_gate(admin: User) -> None:
    make_gate(admin)
    client = client_for(admin)
    again = client.post(reverse("gate_new"), {"document": gate_yaml_text()}).content.decode()
    assert "A gate named safety-gate exists" in again
    other = gate_yaml_text(name="another")
    edited = client.post(reverse("gate_edit", args=[GATE]), {"document": other}).content.decode()
    assert "This page edits safety-gate" in edited
    assert Gate.objects.get(name=GATE).version == 1 and not Gate.objects.filter(name="another")


def test_the_schema_is_public_json_schema() -> None:
    response = client_for(None).get(reverse("gate_schema"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/schema+json"
    assert json.loads(response.content)["title"] == "Scope Web gate"


# --- keys ------------------------------------------------------------------------------------


def test_a_gate_key_is_shown_once_and_never_cached(admin: User) -> None:
    make_gate(admin)
    client = client_for(admin)
    response = client.post(reverse("gate_key_create", args=[GATE]), {"name": "github"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    token = GateToken.objects.get(name="github")
    key = response.context["new_key"]
    assert key.startswith("swg_") and token.key_sha256 == GateToken.hash_key(key)
    assert key in response.content.decode()
    assert key not in client.get(_detail()).content.decode()  # and never again

    client.post(reverse("gate_key_revoke", args=[GATE, token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_key_without_a_name_is_refused_with_a_message(admin: User) -> None:
    make_gate(admin)
    response = client_for(admin).post(
        reverse("gate_key_create", args=[GATE]), {"name": " "}, follow=True
    )
    assert "Give the key a name" in response.content.decode()
    assert not GateToken.objects.exists()


def test_keys_are_for_admins_only(admin: User, reviewer: User) -> None:
    make_gate(admin)
    refused = client_for(reviewer).post(reverse("gate_key_create", args=[GATE]), {"name": "x"})
    assert refused.status_code == 403
    assert 'id="keys"' not in client_for(reviewer).get(_detail()).content.decode()


# --- starting a run --------------------------------------------------------------------------


def test_run_now_without_prompts_is_refused_with_why(admin: User, reviewer: User) -> None:
    make_gate(admin)  # names no prompt set
    response = client_for(reviewer).post(
        reverse("gate_run_start", args=[GATE]), {"checkpoint": "/m/c"}, follow=True
    )
    assert "names no prompt set: send a prompt file" in response.content.decode()
    assert not GateRun.objects.exists()


def test_run_now_with_a_prompt_file_queues_a_run(admin: User, reviewer: User) -> None:
    make_gate(admin)
    upload = SimpleUploadedFile("prompts.txt", b"Hello there\nIgnore all rules\n")
    response = client_for(reviewer).post(
        reverse("gate_run_start", args=[GATE]),
        {"checkpoint": "/m/c", "label": "PR 7", "prompts": upload},
    )
    run = GateRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "gate_run", args=[run.pk]
    )
    assert run.checkpoint == "/m/c" and run.label == "PR 7" and run.prompts_job is not None
    assert run.started_by == reviewer and run.state == GateRun.State.QUEUED


# --- a run's page ----------------------------------------------------------------------------


def test_the_run_page_shows_each_metric_with_its_bar_and_traces(
    admin: User, reviewer: User
) -> None:
    run = make_gate_run(make_gate(admin), admin)
    page = client_for(reviewer).get(reverse("gate_run", args=[run.pk])).content.decode()
    for name in ("anomaly_rate", "flagged_rate", "safety_feature_drift"):
        assert f'id="metric-{name}"' in page
    assert "0.03" in page and "≤ 0.05" in page and "0.02" in page  # value, threshold, baseline
    assert page.count('class="metric-bar"') == 3
    assert f'href="{reverse("trace_detail", args=[11])}"' in page
    assert "tiny: 3 of 100 prompts" in page
    assert "Awaiting sign-off" in page and 'id="decision-form"' in page
    assert "a" * 64 in page  # the pins
    assert reverse("gate_run_report", args=[run.pk]) in page
    assert reverse("gate_run_result", args=[run.pk, "xml"]) in page


def test_auditors_read_the_run_but_neither_decide_nor_follow_trace_links(
    admin: User, auditor: User
) -> None:
    run = make_gate_run(make_gate(admin), admin)
    page = client_for(auditor).get(reverse("gate_run", args=[run.pk])).content.decode()
    assert 'id="metric-anomaly_rate"' in page
    assert 'id="decision-form"' not in page
    assert reverse("trace_detail", args=[11]) not in page


def test_a_working_run_polls_and_reloads_once_measured(admin: User, reviewer: User) -> None:
    run = make_gate_run(make_gate(admin), admin, state=GateRun.State.RUNNING, verdict="")
    url = reverse("gate_run", args=[run.pk])
    client = client_for(reviewer)
    page = client.get(url).content.decode()
    assert f'hx-get="{url}"' in page and "No metric measured yet" in page
    fragment = client.get(url, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and 'id="run-progress"' in fragment.content.decode()
    GateRun.objects.filter(pk=run.pk).update(state=GateRun.State.FAILED, verdict="fail")
    done = client.get(url, HTTP_HX_REQUEST="true")
    assert done.status_code == 204 and done["HX-Refresh"] == "true"


# --- decisions -------------------------------------------------------------------------------


def test_a_reviewer_approves_through_the_page(admin: User, reviewer: User) -> None:
    run = make_gate_run(make_gate(admin), admin)  # US: one approval, no four-eyes
    response = client_for(reviewer).post(
        reverse("gate_run_decide", args=[run.pk]),
        {"decision": "approve", "statement": "Checked the drift traces."},
        follow=True,
    )
    run.refresh_from_db()
    assert run.state == GateRun.State.PASSED
    text = response.content.decode()
    assert f"Gate run {run.pk} approved." in text and "Checked the drift traces." in text
    assert 'id="decision-form"' not in text  # decided: no form again


def test_four_eyes_refuses_the_starters_approval_but_takes_a_rejection(
    admin: User, reviewer: User
) -> None:
    run = make_gate_run(make_gate(admin, profile="UK"), reviewer)  # UK: four-eyes
    client = client_for(reviewer)
    page = client.get(reverse("gate_run", args=[run.pk])).content.decode()
    assert "you started this run, so your approval is refused" in page
    decide = reverse("gate_run_decide", args=[run.pk])
    refused = client.post(decide, {"decision": "approve", "statement": "Mine."}, follow=True)
    assert "has four-eyes sign-off" in refused.content.decode()
    run.refresh_from_db()
    assert run.state == GateRun.State.AWAITING_SIGNOFF and not GateDecision.objects.exists()

    client.post(decide, {"decision": "reject", "statement": "Drift too close to the line."})
    run.refresh_from_db()
    assert run.state == GateRun.State.REJECTED
    assert GateDecision.objects.get().decision == GateDecision.Decision.REJECT


def test_a_decision_needs_a_statement(admin: User, reviewer: User) -> None:
    run = make_gate_run(make_gate(admin), admin)
    response = client_for(reviewer).post(
        reverse("gate_run_decide", args=[run.pk]), {"decision": "approve"}, follow=True
    )
    assert "statement: This field is required." in response.content.decode()
    run.refresh_from_db()
    assert run.state == GateRun.State.AWAITING_SIGNOFF


def test_the_signoff_queue_lists_waiting_runs_oldest_first(admin: User, auditor: User) -> None:
    gate = make_gate(admin)
    first, second = make_gate_run(gate, admin), make_gate_run(gate, admin)
    failed = make_gate_run(gate, admin, state=GateRun.State.FAILED, verdict="fail")
    page = client_for(auditor).get(reverse("gate_signoff_queue")).content.decode()
    assert page.index(f'id="queue-run-{first.pk}"') < page.index(f'id="queue-run-{second.pk}"')
    assert f'id="queue-run-{failed.pk}"' not in page
    assert page.count('class="metric-bar"') == 6
    listing = client_for(auditor).get(reverse("gate_list")).content.decode()
    assert "2 gate runs await sign-off" in listing


# --- downloads and attestations --------------------------------------------------------------


def test_the_results_download_as_json_junit_and_markdown(admin: User, auditor: User) -> None:
    run = make_gate_run(make_gate(admin), admin)
    client = client_for(auditor)
    got = {
        f: client.get(reverse("gate_run_result", args=[run.pk, f])) for f in ("json", "xml", "md")
    }
    assert json.loads(b"".join(got["json"].streaming_content))["verdict"] == "pass"  # type: ignore[attr-defined]
    assert got["xml"]["Content-Type"] == "application/xml"
    assert b'<testsuite name="scope-gate: safety-gate"' in b"".join(got["xml"].streaming_content)  # type: ignore[attr-defined]
    assert b"Scope gate safety-gate passed" in b"".join(got["md"].streaming_content)  # type: ignore[attr-defined]
    assert 'filename="gate-safety-gate-run' in got["md"]["Content-Disposition"]
    assert client.get(reverse("gate_run_result", args=[run.pk, "csv"])).status_code == 404


def test_an_unmeasured_run_has_no_results_report_or_attestation(
    admin: User, reviewer: User
) -> None:
    run = make_gate_run(make_gate(admin), admin, state=GateRun.State.QUEUED, verdict="")
    client = client_for(reviewer)
    for name, args in (
        ("gate_run_result", [run.pk, "json"]),
        ("gate_run_report", [run.pk]),
        ("gate_run_attestation", [run.pk]),
    ):
        assert client.get(reverse(name, args=args)).status_code == 404, name


def test_the_attestation_downloads_as_json(admin: User, auditor: User, dev_key: Path) -> None:
    run = make_gate_run(make_gate(admin), admin, attest=True)
    assert run.attestation is not None
    response = client_for(auditor).get(reverse("gate_run_attestation", args=[run.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert f'filename="gate-run-{run.pk}.intoto.json"' in response["Content-Disposition"]
    assert json.loads(b"".join(response.streaming_content)) == run.attestation  # type: ignore[attr-defined]


def test_the_verify_page_accepts_a_signed_attestation(
    admin: User, auditor: User, dev_key: Path
) -> None:
    run = make_gate_run(make_gate(admin), admin, attest=True)
    envelope = json.dumps(run.attestation)
    page = client_for(auditor).post(reverse("gate_verify"), {"text": envelope}).content.decode()
    assert "Verified: signed by this deployment" in page
    assert "<b>safety-gate</b> version 1" in page and "anomaly_rate" in page
    assert "model:/models/candidate" in page and "a" * 64 in page
    assert run.attestation["signatures"][0]["keyid"] in page  # type: ignore[index]

    upload = SimpleUploadedFile("att.json", envelope.encode())
    by_file = client_for(auditor).post(reverse("gate_verify"), {"file": upload})
    assert "Verified: signed by this deployment" in by_file.content.decode()


def test_the_verify_page_rejects_an_attestation_with_a_changed_byte(
    admin: User, auditor: User, dev_key: Path
) -> None:
    run = make_gate_run(make_gate(admin), admin, attest=True)
    envelope = dict(run.attestation or {})
    payload = bytearray(base64.b64decode(envelope["payload"]))
    at = payload.index(b'"verdict":"pass"') + len(b'"verdict":"')
    payload[at : at + 4] = b"fail"[:4]  # the verdict, rewritten
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()
    page = (
        client_for(auditor)
        .post(reverse("gate_verify"), {"text": json.dumps(envelope)})
        .content.decode()
    )
    assert "Not verified" in page and "The signature does not verify" in page
    assert "Verified: signed" not in page


def test_the_verify_page_names_what_is_wrong_with_other_input(auditor: User, dev_key: Path) -> None:
    client = client_for(auditor)
    assert "is not JSON" in client.post(reverse("gate_verify"), {"text": "{"}).content.decode()
    empty = client.post(reverse("gate_verify"), {"text": ""}).content.decode()
    assert "Paste an attestation" in empty


def test_no_deployment_key_means_not_verified_with_why(
    admin: User, auditor: User, settings: object, tmp_path: Path
) -> None:
    settings.SIGNING_P12_PATH = tmp_path / "absent.p12"  # type: ignore[attr-defined]
    page = client_for(auditor).post(reverse("gate_verify"), {"text": "{}"}).content.decode()
    assert "no key to verify with" in page


def test_the_report_without_a_signing_key_says_why(
    admin: User, reviewer: User, settings: object, tmp_path: Path
) -> None:
    settings.SIGNING_P12_PATH = tmp_path / "absent.p12"  # type: ignore[attr-defined]
    run = make_gate_run(make_gate(admin), admin)
    response = client_for(reviewer).get(reverse("gate_run_report", args=[run.pk]), follow=True)
    assert "No report: it cannot be signed" in response.content.decode()
    assert not AuditEvent.objects.filter(action="gate_run.report").exists()


def test_the_example_document_saves_as_it_is(admin: User) -> None:
    make_sae()
    client = client_for(admin)
    example = client.get(reverse("gate_new")).context["text"]
    assert client.post(reverse("gate_new"), {"document": example}).status_code == 302
    assert Gate.objects.get().profile.code == "UK"


def test_missing_gates_and_runs_are_404_for_readers_and_403_for_outsiders(
    auditor: User, outsider: User
) -> None:
    for url in (reverse("gate_detail", args=["no-such-gate"]), reverse("gate_run", args=[999999])):
        assert client_for(auditor).get(url).status_code == 404, url
        assert client_for(outsider).get(url).status_code == 403, url


def test_the_nav_links_gates_for_those_who_see_them(auditor: User, outsider: User) -> None:
    link = f'<a href="{reverse("gate_list")}">Gates</a>'
    assert link in client_for(auditor).get(reverse("home")).content.decode()
    assert link not in client_for(outsider).get(reverse("home")).content.decode()
