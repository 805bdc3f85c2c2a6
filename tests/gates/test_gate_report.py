"""The signed PDF report of a gate run: made on request, signed with the deployment's key (the
attestation's), read back by poppler."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from gates.models import GateDecision, GateRun
from scopeweb.audit.models import AuditEvent
from scopeweb.storage import bytes_sha256
from tests.conftest import client_for
from tests.gates.page_kit import (
    MODEL_SHA,
    make_gate,
    make_gate_run,
)
from tests.tools import needs

pytestmark = pytest.mark.django_db
needs_poppler = needs("pdftotext", "pdfsig", package="poppler-utils")


def _poppler(command: str, data: bytes, tmp_path: Path) -> str:
    path = tmp_path / f"{command}.pdf"
    path.write_bytes(data)
    out = subprocess.run([command, str(path), *(["-"] if command == "pdftotext" else [])],
                         capture_output=True, timeout=60)  # fmt: skip
    return out.stdout.decode() + out.stderr.decode()


@needs_poppler
def test_the_report_shows_the_run_and_its_signature_holds(
    admin: User, reviewer: User, auditor: User, dev_key: Path, tmp_path: Path
) -> None:
    run = make_gate_run(make_gate(admin), admin, attest=True)
    GateDecision.objects.create(
        run=run, reviewer=reviewer, decision="approve", statement="Drift traces read: benign."
    )
    GateRun.objects.filter(pk=run.pk).update(state=GateRun.State.PASSED)
    started = time.monotonic()
    response = client_for(auditor).get(reverse("gate_run_report", args=[run.pk]))
    seconds = time.monotonic() - started
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    data = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert data.startswith(b"%PDF") and seconds < 10  # made on request: it must stay quick

    text = " ".join(_poppler("pdftotext", data, tmp_path).split())
    for expected in (
        "Gate safety-gate · run", "Version 1", "anomaly_rate", "flagged_rate",
        "safety_feature_drift", "≤ 0.05", "/models/candidate", "google/gemma-3-270m",
        "Drift traces read: benign.", "rita", MODEL_SHA[:40], "DEVELOPMENT KEY",
    ):  # fmt: skip
        assert expected in text, expected
    keyid = run.attestation["signatures"][0]["keyid"]  # type: ignore[index]
    assert keyid[:32] in text.replace(" ", "")

    checked = _poppler("pdfsig", data, tmp_path)
    assert "Signature is Valid" in checked, checked
    assert "Scope Web gate pages test" in checked  # the development key's name

    event = AuditEvent.objects.get(action="gate_run.report")
    assert event.object_id == str(run.pk) and event.detail["sha256"] == bytes_sha256(data)


@needs_poppler
def test_a_failed_run_reports_its_failing_metric(
    admin: User, reviewer: User, dev_key: Path, tmp_path: Path
) -> None:
    failing = {
        "name": "anomaly_rate", "value": 0.2, "threshold": 0.05, "baseline": 0.02,
        "unit": "share", "passed": False, "traces": [7], "detail": "tiny: 20 of 100 prompts",
    }  # fmt: skip
    run = make_gate_run(
        make_gate(admin), admin, state=GateRun.State.FAILED, verdict="fail", metrics=[failing]
    )
    response = client_for(reviewer).get(reverse("gate_run_report", args=[run.pk]))
    text = " ".join(_poppler("pdftotext", b"".join(response.streaming_content), tmp_path).split())  # type: ignore[attr-defined]
    assert "FAIL" in text.upper() and "0.2" in text and "tiny: 20 of 100 prompts" in text
    assert "only a run whose metrics all hold is signed off" in text
