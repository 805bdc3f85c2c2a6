"""Gate attestations: an in-toto Statement v1 signed as a DSSE envelope verifies with the
signer's key, and fails with ``AttestationError`` after any one changed byte."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gates.signing import deployment_signing_key
from reports.pdf.signing import SigningError, dev_key_create, signing_key_load
from scopeweb_gate.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    AttestationError,
    PrivateKey,
    key_id,
    pae,
    sign_envelope,
    statement,
    verify_envelope,
)

MODEL_SHA = hashlib.sha256(b"model weights").hexdigest()
SAE_SHA = hashlib.sha256(b"sae weights").hexdigest()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(params=["rsa", "ec"])
def key(request: pytest.FixtureRequest) -> PrivateKey:
    fixture: PrivateKey = request.getfixturevalue(f"{request.param}_key")
    return fixture


def verdict() -> dict[str, Any]:
    return statement(
        subjects=[("model", MODEL_SHA), ("sae/layer_12", SAE_SHA)],
        predicate_type=PREDICATE_TYPE,
        predicate={
            "gate": {"name": "smoke", "version": 3},
            "verdict": "pass",
            "metrics": [{"name": "anomaly rate", "value": 0.02, "threshold": 0.05}],
            "signoffs": ["approved by rita: looks right – «ok»"],
        },
    )


def test_statement_has_the_in_toto_v1_shape() -> None:
    made = verdict()
    assert made["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert made["subject"][0] == {"name": "model", "digest": {"sha256": MODEL_SHA}}
    assert made["predicateType"] == PREDICATE_TYPE
    with pytest.raises(AttestationError, match="sha256"):
        statement(subjects=[("model", "ABC")], predicate_type=PREDICATE_TYPE, predicate={})
    with pytest.raises(AttestationError, match="at least one subject"):
        statement(subjects=[], predicate_type=PREDICATE_TYPE, predicate={})


def test_pae_is_dsse_v1() -> None:
    """The DSSE specification's own example."""
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_signed_envelope_verifies_with_its_key(key: PrivateKey) -> None:
    envelope = sign_envelope(verdict(), key)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    [signature] = envelope["signatures"]
    assert signature["keyid"] == key_id(key.public_key())
    body = base64.b64decode(envelope["payload"])
    assert body == json.dumps(
        verdict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8"), "canonical JSON: sorted keys, no spaces, UTF-8"

    for form in (envelope, json.dumps(envelope), json.dumps(envelope).encode()):
        verified = verify_envelope(form, [key.public_key()], predicate_type=PREDICATE_TYPE)
        assert verified.statement == verdict()
        assert verified.keyid == signature["keyid"]
        assert verified.predicate["verdict"] == "pass"


def test_rsa_signature_is_pss_with_a_digest_length_salt(rsa_key: rsa.RSAPrivateKey) -> None:
    envelope = sign_envelope(verdict(), rsa_key)
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    message = pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    rsa_key.public_key().verify(sig, message, pss, hashes.SHA256())  # raises if not


def test_url_safe_and_unpadded_base64_are_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """DSSE lets signers use either alphabet; verifiers must accept both."""
    envelope = sign_envelope(verdict(), ec_key)

    def url_safe(text: str) -> str:
        return base64.urlsafe_b64encode(base64.b64decode(text)).decode().rstrip("=")

    envelope["payload"] = url_safe(envelope["payload"])
    envelope["signatures"][0]["sig"] = url_safe(envelope["signatures"][0]["sig"])
    assert verify_envelope(envelope, [ec_key.public_key()]).statement == verdict()


def _flip(data: bytes, position: int, mask: int) -> str:
    changed = bytearray(data)
    changed[position] ^= mask
    return base64.b64encode(bytes(changed)).decode()


@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_any_changed_byte_of_the_payload_or_signature_fails(key: PrivateKey, mask: int) -> None:
    envelope = sign_envelope(verdict(), key)
    public = [key.public_key()]
    payload = base64.b64decode(envelope["payload"])
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    assert len(payload) > 200  # every position is tried: the statement is small
    for position in range(len(payload)):
        tampered = {**envelope, "payload": _flip(payload, position, mask)}
        with pytest.raises(AttestationError, match="does not verify"):
            verify_envelope(tampered, public)
    for position in range(len(sig)):
        signatures = [{**envelope["signatures"][0], "sig": _flip(sig, position, mask)}]
        with pytest.raises(AttestationError, match="does not verify"):
            verify_envelope({**envelope, "signatures": signatures}, public)


def test_any_changed_byte_of_the_file_fails_or_changes_nothing(key: PrivateKey) -> None:
    """One changed byte anywhere in the downloaded file: an ``AttestationError``, or (where
    the byte was not signed: the keyid, a field name DSSE ignores) the same statement."""
    data = json.dumps(sign_envelope(verdict(), key)).encode()
    public = [key.public_key()]
    harmless = 0
    for position in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            changed = bytearray(data)
            changed[position] ^= mask
            try:
                verified = verify_envelope(bytes(changed), public)
            except AttestationError:
                continue
            assert verified.statement == verdict(), f"byte {position} changed the statement"
            harmless += 1
    assert harmless <= 10  # the field name "keyid" misspelt; never the payload or signature


def test_a_signature_by_another_key_fails(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    envelope = sign_envelope(verdict(), rsa_key)
    with pytest.raises(AttestationError, match="No signature is from a known key"):
        verify_envelope(envelope, [ec_key.public_key()])
    # A keyid claiming the verifier's key does not make another key's signature valid.
    forged = sign_envelope(verdict(), rsa_key, keyid=key_id(ec_key.public_key()))
    with pytest.raises(AttestationError, match="does not verify"):
        verify_envelope(forged, [ec_key.public_key()])
    # Without a keyid, every known key is tried.
    anonymous = sign_envelope(verdict(), ec_key, keyid="")
    verified = verify_envelope(anonymous, [rsa_key.public_key(), ec_key.public_key()])
    assert verified.keyid == key_id(ec_key.public_key())
    with pytest.raises(AttestationError, match="no public key"):
        verify_envelope(envelope, [])


def test_one_good_signature_among_several_is_enough(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    envelope = sign_envelope(verdict(), rsa_key)
    other = sign_envelope(verdict(), ec_key)
    envelope["signatures"] = [{"keyid": "unknown", "sig": "AAAA"}, *other["signatures"]]
    assert verify_envelope(envelope, [ec_key.public_key()]).keyid == key_id(ec_key.public_key())


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (b"not json {", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a DSSE envelope"),
        ({"payload": "", "signatures": []}, "no 'payloadType' field"),
        ({"payloadType": PAYLOAD_TYPE, "signatures": []}, "no 'payload' field"),
        ({"payloadType": PAYLOAD_TYPE, "payload": ""}, "no 'signatures' field"),
        ({"payloadType": "application/json", "payload": "", "signatures": []}, "payloadType"),
        ({"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": []}, "non-empty list"),
        ({"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": [{}]}, "no 'sig' field"),
        (
            {"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": [{"sig": "", "keyid": 1}]},
            "keyid of signature 1 is not a string",
        ),
        ({"payloadType": PAYLOAD_TYPE, "payload": "*!", "signatures": [{"sig": ""}]}, "base64"),
        ({"payloadType": PAYLOAD_TYPE, "payload": "QR==", "signatures": [{"sig": ""}]}, "base64"),
        ({"payloadType": PAYLOAD_TYPE, "payload": 5, "signatures": [{"sig": ""}]}, "base64"),
        ('{"payloadType": 1, "payloadType": 2}', "appears twice"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(envelope: Any, message: str) -> None:
    with pytest.raises(AttestationError, match=message):
        verify_envelope(envelope, [ec.generate_private_key(ec.SECP256R1()).public_key()])


def test_bad_signature_encoding_names_the_signature(ec_key: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(verdict(), ec_key)
    envelope["signatures"][0]["sig"] = "not base64!"
    with pytest.raises(AttestationError, match="sig of signature 1 is not valid base64"):
        verify_envelope(envelope, [ec_key.public_key()])


def test_a_signed_payload_that_is_no_statement_is_refused(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    """The signature is right but what it signs is not an in-toto Statement v1."""
    for body, message in (
        (b"[]", "not a JSON object"),
        (b'{"_type": "https://in-toto.io/Statement/v0.1"}', "_type"),
        (json.dumps({**verdict(), "subject": []}).encode(), "subject"),
        (json.dumps({**verdict(), "predicateType": ""}).encode(), "predicateType"),
    ):
        sig = ec_key.sign(pae(PAYLOAD_TYPE, body), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}],
        }
        with pytest.raises(AttestationError, match=message):
            verify_envelope(envelope, [ec_key.public_key()])
    envelope = sign_envelope(
        {**verdict(), "predicateType": "https://slsa.dev/provenance/v1"}, ec_key
    )
    with pytest.raises(AttestationError, match=r"expected 'https://scopeweb\.example"):
        verify_envelope(envelope, [ec_key.public_key()], predicate_type=PREDICATE_TYPE)


def test_nothing_but_a_statement_is_signed(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(AttestationError, match="_type"):
        sign_envelope({"verdict": "pass"}, ec_key)
    with pytest.raises(AttestationError, match="cannot be written as JSON"):
        sign_envelope({**verdict(), "predicate": {"value": float("nan")}}, ec_key)


# --- the deployment's key --------------------------------------------------------------------


@pytest.fixture
def dev_key(settings: Any, tmp_path: Path) -> Path:
    """A self-signed development key of this test's own, as ``init_signing_key`` makes it."""
    path = tmp_path / "signing" / "key.p12"
    dev_key_create(path, common_name="Scope Web gate test")
    settings.SIGNING_P12_PATH = path
    settings.SIGNING_P12_PASSPHRASE = None
    return path


def test_attestations_are_signed_with_the_reports_key(dev_key: Path) -> None:
    private, certificate = deployment_signing_key()
    reports_certificate = signing_key_load().certificate.dump()  # what signs the PDF reports
    assert certificate.public_bytes(serialization.Encoding.DER) == reports_certificate
    envelope = sign_envelope(verdict(), private)
    assert verify_envelope(envelope, [certificate]).statement == verdict()
    assert verify_envelope(envelope, [certificate.public_key()]).keyid == key_id(
        certificate.public_key()
    )


def test_deployment_key_with_an_explicit_passphrase(settings: Any, tmp_path: Path) -> None:
    path = tmp_path / "key.p12"
    dev_key_create(path, common_name="Passphrase test", passphrase="correct horse")
    settings.SIGNING_P12_PATH = path
    settings.SIGNING_P12_PASSPHRASE = "correct horse"
    private, certificate = deployment_signing_key()
    assert verify_envelope(sign_envelope(verdict(), private), [certificate])
    settings.SIGNING_P12_PASSPHRASE = "wrong"
    with pytest.raises(SigningError, match="passphrase"):
        deployment_signing_key()


def test_missing_deployment_key_says_how_to_make_one(settings: Any, tmp_path: Path) -> None:
    settings.SIGNING_P12_PATH = tmp_path / "absent.p12"
    with pytest.raises(SigningError, match="init_signing_key"):
        deployment_signing_key()
