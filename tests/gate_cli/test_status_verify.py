"""``scopeweb-gate status`` and ``verify``, and that the command needs no Django."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scopeweb_gate.attestation import PREDICATE_TYPE, sign_envelope, statement
from scopeweb_gate.cli import main
from tests.gate_cli.conftest import FakeGate, result, status


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (status("passed", "pass"), 0),
        (status("failed", "fail"), 1),
        (status("rejected", "pass", signoff="rejected by bob: drifted"), 1),
        (status("error", "error", error="worker lost"), 2),
        (status("queued"), 3),
        (status("running"), 3),
        (status("awaiting_signoff", "pass", signoff="pending"), 3),
    ],
)
def test_status_exit_codes(gate: FakeGate, reply: dict[str, object], code: int) -> None:
    gate.then(reply)
    assert main(["status", "7", "--server", gate.url]) == code


def test_status_prints_the_state_and_writes_the_result(
    gate: FakeGate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.then(status("awaiting_signoff", "pass", signoff="pending"))
    assert main(["status", "7", "--server", gate.url, "--json", str(tmp_path / "g.json")]) == 3
    assert "awaiting_signoff, verdict pass, sign-off pending" in capsys.readouterr().out
    assert json.loads((tmp_path / "g.json").read_text()) == result("pass", "pending")


def test_status_of_an_unknown_run_exits_2(
    gate: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "99", "--server", gate.url]) == 2
    assert "server said 404: Not found." in capsys.readouterr().err


# --- verify ------------------------------------------------------------------------------------


def certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Scope Web test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    """An attestation file and the PEM certificate of the key that signed it."""
    key = ec.generate_private_key(ec.SECP256R1())
    predicate = result("pass", "approved by alice") | {
        "state": "passed",
        "signoffs_required": 1,
        "decisions": [
            {"reviewer": "alice", "decision": "approve", "statement": "ok", "at": "2025-03-04"}
        ],
    }
    made = statement(
        subjects=[("model", "a" * 64), ("prompts", "b" * 64)],
        predicate_type=PREDICATE_TYPE,
        predicate=predicate,
    )
    (tmp_path / "att.json").write_text(json.dumps(sign_envelope(made, key)))
    (tmp_path / "cert.pem").write_bytes(certificate(key))
    return tmp_path / "att.json", tmp_path / "cert.pem"


def test_a_good_attestation_verifies_and_shows_its_predicate(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    envelope, cert = signed
    assert main(["verify", str(envelope), "--cert", str(cert)]) == 0
    out = capsys.readouterr().out
    assert "gate: smoke (version 2)" in out
    assert "verdict: pass (state passed)" in out
    assert "sign-off: approved by alice (1 required)" in out
    assert "decision: approve by alice at 2025-03-04: ok" in out
    assert f"subject: model sha256:{'a' * 64}" in out


def test_one_changed_byte_of_the_payload_does_not_verify(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    envelope, cert = signed
    data = json.loads(envelope.read_text())
    payload = bytearray(base64.b64decode(data["payload"]))
    payload[payload.index(b'"pass"') + 1] = ord("f")  # "pass" -> "fass"
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    envelope.write_text(json.dumps(data))
    assert main(["verify", str(envelope), "--cert", str(cert)]) == 1
    assert "does not verify: The signature does not verify" in capsys.readouterr().err


def test_another_keys_certificate_does_not_verify(signed: tuple[Path, Path]) -> None:
    envelope, cert = signed
    cert.write_bytes(certificate(ec.generate_private_key(ec.SECP256R1())))
    assert main(["verify", str(envelope), "--cert", str(cert)]) == 1


def test_a_missing_attestation_file_exits_2(
    signed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path / "none.json"), "--cert", str(signed[1])]) == 2
    assert "none.json: no such file" in capsys.readouterr().err


def test_a_file_that_is_no_certificate_exits_2(signed: tuple[Path, Path]) -> None:
    envelope, cert = signed
    cert.write_text("not a certificate")
    assert main(["verify", str(envelope), "--cert", str(cert)]) == 2


def test_verify_fetches_the_certificate_from_the_server(
    gate: FakeGate, signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, cert = signed
    gate.certificate = cert.read_bytes()
    monkeypatch.delenv("SCOPEWEB_GATE_TOKEN")  # the certificate is public
    assert main(["verify", str(envelope), "--server", gate.url]) == 0
    (fetched,) = gate.seen
    assert fetched.path == "/api/gates/v1/certificate"
    assert "Authorization" not in fetched.headers


def test_the_command_imports_no_django() -> None:
    check = (
        "import scopeweb_gate.cli, sys; "
        "assert not any(m.split('.')[0] in ('django', 'torch') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
