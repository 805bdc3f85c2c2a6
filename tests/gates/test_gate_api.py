"""The gate API as scopeweb-gate speaks it, the reviewers' decisions, and the real command
against a live server: submission, status and exit codes, outputs, and the attestation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from gates.models import GateRun
from gates.services.definitions import GateRefused, gate_save, gate_token_create, parse_gate_yaml
from gates.services.runs import gate_run_decide
from gates.signing import deployment_signing_key
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.retention.models import RetentionProfile
from scopeweb_gate import cli
from scopeweb_gate.attestation import verify_envelope
from scopeweb_gate.outputs import result_from_json
from tests.gates.page_kit import gate_yaml_text, make_gate, make_gate_run, make_sae
from tests.traces.conftest import jsonl

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dev_key")]


def _key(gate: Any, admin: User) -> str:
    return gate_token_create(gate=gate, name="ci", actor=Actor.command(admin))[1]


def _api(key: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def test_a_key_starts_a_run_of_its_gate_with_a_prompt_file(admin: User) -> None:
    gate = make_gate(admin)
    answer = _api(_key(gate, admin)).post(
        "/api/gates/v1/runs",
        {"gate": gate.name, "checkpoint": "/models/candidate", "label": "PR 7",
         "prompts": _upload("p.jsonl", jsonl(["one", "two"]))},
    )  # fmt: skip
    assert answer.status_code == 201, answer.content
    status = answer.json()
    run = GateRun.objects.get(pk=status["id"])
    assert (status["state"], status["finished"], status["verdict"]) == ("queued", False, None)
    assert run.checkpoint == "/models/candidate" and run.prompts_job is not None
    assert run.started_by == admin  # the key's maker: four-eyes keeps them from approving
    assert status["url"].endswith(f"/gates/runs/{run.pk}/")
    event = AuditEvent.objects.get(action="gate_run.start")
    assert event.after is not None and event.after["label"] == "PR 7"


def _upload(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_bad_input_is_refused_naming_the_field_or_line(admin: User) -> None:
    gate = make_gate(admin)
    api = _api(_key(gate, admin))
    bad_line = api.post(
        "/api/gates/v1/runs",
        {"gate": gate.name, "prompts": _upload("p.jsonl", b'{"prompt": "ok"}\n{"prompt": \n')},
    )
    assert bad_line.status_code == 400 and "line 2" in json.dumps(bad_line.json())
    no_prompts = api.post(
        "/api/gates/v1/runs", {"gate": gate.name}, content_type="application/json"
    )
    assert no_prompts.status_code == 400 and no_prompts.json()["field"] == "prompts"
    too_long = api.post(
        "/api/gates/v1/runs",
        {"gate": gate.name, "checkpoint": "x" * 301},
        content_type="application/json",
    )
    assert too_long.status_code == 400 and too_long.json()["field"] == "checkpoint"
    assert not GateRun.objects.exists()


def test_a_key_reaches_its_own_gate_only(admin: User) -> None:
    gate = make_gate(admin)
    other = gate_save(
        document=parse_gate_yaml(gate_yaml_text(name="other")), actor=Actor.command(admin)
    )
    run = make_gate_run(gate, admin)
    key = _key(other, admin)
    assert _api(key).get(f"/api/gates/v1/runs/{run.pk}").status_code == 403
    wrong_gate = _api(key).post(
        "/api/gates/v1/runs", {"gate": gate.name}, content_type="application/json"
    )
    assert wrong_gate.status_code == 403
    assert _api("swg_unknown").get(f"/api/gates/v1/runs/{run.pk}").status_code == 401
    assert _api(key).get("/api/traces/").status_code == 401  # the key reads nothing else


def test_status_carries_the_result_that_the_cli_reads(admin: User, reviewer: User) -> None:
    gate = make_gate(admin)
    run = make_gate_run(gate, reviewer, attest=True)
    status = _api(_key(gate, admin)).get(f"/api/gates/v1/runs/{run.pk}").json()
    assert status["state"] == "awaiting_signoff" and status["signoff"]["state"] == "pending"
    result = result_from_json(json.dumps(status["result"]))
    assert result.verdict == "pass" and [m.name for m in result.metrics] == [
        "anomaly_rate", "flagged_rate", "safety_feature_drift",
    ]  # fmt: skip
    assert result.metrics[0].links[0].endswith("/traces/11/")
    envelope = _api(_key(gate, admin)).get(status["attestation_url"]).json()
    pem = Client().get("/api/gates/v1/certificate").content
    from cryptography import x509

    verified = verify_envelope(envelope, [x509.load_pem_x509_certificate(pem)])
    assert verified.predicate["verdict"] == "pass"


def test_decisions_follow_the_profile(
    admin: User, reviewer: User, second_reviewer: User, auditor: User
) -> None:
    uk = RetentionProfile.objects.get(code="UK")
    uk.four_eyes, uk.signoffs_required = True, 2
    uk.save()
    gate = make_gate(admin, profile="UK")
    run = make_gate_run(gate, reviewer, attest=True)
    with pytest.raises(GateRefused, match="four-eyes"):
        gate_run_decide(run=run, actor=Actor.command(reviewer), approve=True, statement="mine")
    with pytest.raises(GateRefused, match="may not"):
        gate_run_decide(run=run, actor=Actor.command(auditor), approve=True, statement="no")
    with pytest.raises(GateRefused, match="statement"):
        gate_run_decide(run=run, actor=Actor.command(admin), approve=True, statement="  ")
    gate_run_decide(run=run, actor=Actor.command(second_reviewer), approve=True, statement="ok")
    run.refresh_from_db()
    assert run.state == GateRun.State.AWAITING_SIGNOFF  # one of two
    with pytest.raises(GateRefused, match="already"):
        gate_run_decide(run=run, actor=Actor.command(second_reviewer), approve=True, statement="x")
    gate_run_decide(run=run, actor=Actor.command(admin), approve=True, statement="ok too")
    run.refresh_from_db()
    assert run.state == GateRun.State.PASSED and run.finished_at is not None
    actions = list(AuditEvent.objects.filter(action__startswith="gate_run.").values_list(
        "action", flat=True))  # fmt: skip
    assert actions.count("gate_run.approve") == 2 and "gate_run.transition" in actions


def test_a_rejection_ends_the_run_and_the_attestation_records_it(
    admin: User, reviewer: User, second_reviewer: User
) -> None:
    gate = make_gate(admin)
    run = make_gate_run(gate, reviewer, attest=True)
    gate_run_decide(
        run=run, actor=Actor.command(second_reviewer), approve=False, statement="drift too high"
    )
    run.refresh_from_db()
    assert run.state == GateRun.State.REJECTED
    assert run.attestation is not None
    predicate = verify_envelope(run.attestation, [deployment_signing_key()[1]]).predicate
    assert predicate["signoff"] == "rejected by rob: drift too high"
    assert predicate["state"] == "rejected"
    with pytest.raises(GateRefused, match="rejected"):
        gate_run_decide(run=run, actor=Actor.command(admin), approve=True, statement="late")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_real_command_against_a_live_server(
    live_server: Any,
    admin: User,
    reviewer: User,
    second_reviewer: User,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Any,
) -> None:
    """scopeweb-gate's run, status and verify over HTTP: pending (3), approved (0) after a
    reviewer's decision, a rejected run (1), the JUnit it writes, and a changed byte."""
    settings.PUBLIC_URL = live_server.url
    make_sae()
    gate = make_gate(admin)
    monkeypatch.setenv("SCOPEWEB_GATE_TOKEN", _key(gate, admin))
    server = ["--server", live_server.url]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(jsonl(["a prompt", "another"]))
    submit = ["run", *server, "--gate", gate.name, "--checkpoint", "/m", "--prompts", str(prompts)]
    assert cli.main(submit) == 0  # submitted, not waited for
    submitted = GateRun.objects.get()
    assert submitted.state == GateRun.State.QUEUED and submitted.checkpoint == "/m"

    run = make_gate_run(gate, reviewer, attest=True)
    junit = tmp_path / "junit.xml"
    assert cli.main(["status", str(run.pk), *server, "--junit", str(junit)]) == 3  # pending
    assert junit.read_text().count("<testcase") == 3
    gate_run_decide(run=run, actor=Actor.command(second_reviewer), approve=True, statement="ok")
    assert cli.main(["status", str(run.pk), *server]) == 0
    assert "approved by rob" in capsys.readouterr().out

    envelope = tmp_path / "attestation.json"
    run.refresh_from_db()
    envelope.write_text(json.dumps(run.attestation))
    assert cli.main(["verify", str(envelope), *server]) == 0
    changed = json.loads(envelope.read_text())
    changed["payload"] = ("A" if changed["payload"][0] != "A" else "B") + changed["payload"][1:]
    envelope.write_text(json.dumps(changed))
    assert cli.main(["verify", str(envelope), *server]) == 1

    rejected = make_gate_run(gate, reviewer, attest=True)
    gate_run_decide(run=rejected, actor=Actor.command(admin), approve=False, statement="no")
    assert cli.main(["status", str(rejected.pk), *server]) == 1
