"""PAdES B-T: a report signed with an RFC 3161 timestamp from a timestamp server over HTTP.

No public timestamp server is reachable here, so the test runs one on 127.0.0.1: a plain HTTP
server that answers ``application/timestamp-query`` with tokens signed by pyHanko's own
``DummyTimeStamper`` and a TSA certificate made for the test (extended key usage
timeStamping). The product's side is unchanged: ``SCOPEWEB_TSA_URL`` points at it, pyHanko's
``HTTPTimeStamper`` asks it over the network, and ``report_verify`` reads the token back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from reports.models import CaseReport
from reports.pdf.signing import SigningError
from reports.pdf.verify import report_verify
from reports.services.reports import report_bytes, report_generate
from scopeweb.accounts.actor import Actor
from tests.reports.test_report_generate import dev_key, real_run, signed_case  # noqa: F401

pytestmark = pytest.mark.django_db
TSA_NAME = "Scope Web test timestamp authority"


def _tsa_identity() -> tuple[Any, Any]:
    """A self-signed TSA certificate (critical EKU timeStamping) and its key, as asn1crypto
    objects for pyHanko."""
    from asn1crypto import keys, x509
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, TSA_NAME)])
    now = datetime.now(UTC)
    cert = (
        cx509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    der_key = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        keys.PrivateKeyInfo.load(der_key),
    )


class _Tsa(ThreadingHTTPServer):
    stamper: Any
    requests_seen: int = 0
    broken: bool = False


class _TsaHandler(BaseHTTPRequestHandler):
    server: _Tsa

    def do_POST(self) -> None:  # http.server's name for the POST handler
        from asn1crypto import tsp

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests_seen += 1
        if self.server.broken or self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_response(500)
            self.end_headers()
            return
        answer = self.server.stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def tsa(settings: Any, dev_key: Path) -> Iterator[_Tsa]:  # noqa: F811  # the imported fixture
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    cert, key = _tsa_identity()
    server = _Tsa(("127.0.0.1", 0), _TsaHandler)
    server.stamper = DummyTimeStamper(tsa_cert=cert, tsa_key=key)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SIGNING_TSA_URL = f"http://127.0.0.1:{server.server_address[1]}/tsr"
    settings.SIGNING_TSA_TIMEOUT = 10
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.model
def test_report_carries_an_rfc3161_timestamp_from_the_configured_server(
    tsa: _Tsa, reviewer: User, second_reviewer: User
) -> None:
    run = real_run(reviewer)
    case = signed_case(reviewer, second_reviewer, run, evidence=1)
    before = datetime.now(UTC)
    report = report_generate(case, actor=Actor.command(reviewer))
    # pyHanko asks twice: once to size the signature's placeholder, once for the token.
    assert report.timestamped and tsa.requests_seen >= 1
    result = report_verify(report_bytes(report))
    assert result.valid and result.whole_file and result.issued_here, result.verdict
    assert result.timestamp is not None and result.timestamp_valid
    assert before - timedelta(minutes=1) <= result.timestamp <= datetime.now(UTC)
    assert TSA_NAME in result.timestamp_authority
    assert not any("timestamp" in note.lower() for note in result.notes)


@pytest.mark.model
def test_a_timestamp_server_that_fails_stores_no_report_and_names_the_server(
    tsa: _Tsa, reviewer: User, second_reviewer: User
) -> None:
    run = real_run(reviewer)
    case = signed_case(reviewer, second_reviewer, run, evidence=1)
    tsa.broken = True
    with pytest.raises(SigningError, match=r"timestamp server http://127\.0\.0\.1:"):
        report_generate(case, actor=Actor.command(reviewer))
    assert tsa.requests_seen >= 1
    assert not CaseReport.objects.filter(case=case).exists()
