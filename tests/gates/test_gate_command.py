"""``manage.py gate``: import, export, schema, key, status and decide on the server side."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from gates.models import Gate, GateRun, GateToken
from tests.gates.page_kit import gate_yaml_text, make_gate_run, make_sae

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dev_key")]


def _call(*args: str) -> str:
    out = StringIO()
    call_command("gate", *args, stdout=out)
    return out.getvalue()


def test_import_export_schema_and_key(tmp_path: Path, admin: User) -> None:
    make_sae()
    path = tmp_path / "gate.yaml"
    path.write_text(gate_yaml_text())
    assert "saved gate safety-gate version 1" in _call("import", str(path), "--user", "ada")
    assert "saved gate safety-gate version 2" in _call("import", str(path))
    exported = _call("export", "safety-gate")
    assert exported.startswith("# Scope Web gate; schema: scopeweb.gate/v1")
    assert "version: 2" in exported and "anomaly_rate" in exported
    assert json.loads(_call("schema"))["properties"]["metrics"]["minItems"] == 3
    key = _call("key", "safety-gate", "ci").strip()
    token = GateToken.objects.get()
    assert key.startswith("swg_") and token.key_sha256 == GateToken.hash_key(key)


def test_bad_documents_and_names_are_refused_with_the_field(tmp_path: Path) -> None:
    make_sae()
    path = tmp_path / "gate.yaml"
    path.write_text(gate_yaml_text().replace("anomaly_rate", "anomaly"))
    with pytest.raises(CommandError, match=r"metrics\.0\.name"):
        _call("import", str(path))
    path.write_text(gate_yaml_text(name="verify"))
    with pytest.raises(CommandError, match="page addresses"):
        _call("import", str(path))
    with pytest.raises(CommandError, match="No gate is named"):
        _call("export", "nope")
    assert not Gate.objects.exists()


def test_status_and_a_reviewers_decision(
    tmp_path: Path, admin: User, reviewer: User, second_reviewer: User
) -> None:
    make_sae()
    path = tmp_path / "gate.yaml"
    path.write_text(gate_yaml_text())
    _call("import", str(path))
    run = make_gate_run(Gate.objects.get(), reviewer, attest=True)
    junit = tmp_path / "junit.xml"
    assert "**Sign-off:** pending" in _call("status", str(run.pk), "--junit", str(junit))
    assert junit.read_text().count("<testcase") == 3
    with pytest.raises(CommandError, match="--user"):
        _call("decide", str(run.pk), "approve", "--statement", "ok")
    shown = _call("decide", str(run.pk), "approve", "--user", "rob", "--statement", "looked")
    assert "approved by rob" in shown
    run.refresh_from_db()
    assert run.state == GateRun.State.PASSED
