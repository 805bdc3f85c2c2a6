"""Signed attestations of gate verdicts: an in-toto Statement v1 in a DSSE envelope.

A finished gate run is recorded as an in-toto Statement (its subjects are the artifacts it
judged, pinned by sha256; its predicate the verdict) and signed with the deployment's key as a
DSSE envelope, so that anyone holding the deployment's certificate can check, offline, that the
verdict came from this deployment and was not edited since.

This module needs ``cryptography`` alone (no Django): ``scopeweb-gate verify`` runs it on CI
runners. The deployment's signing key is opened by ``gates.signing``.

- Statement v1: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
- DSSE v1: https://github.com/secure-systems-lab/dsse (``envelope.md``, ``protocol.md``)

Signatures: RSA keys sign with RSA-PSS over SHA-256 (MGF1/SHA-256, salt length 32, the digest
length); EC keys with ECDSA over SHA-256, the signature DER-encoded (as cosign writes it). A
signature's ``keyid`` is the sha256 hex of the public key's DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"

PREDICATE_TYPE = "https://scopeweb.example/gate-verdict/v1"
"""The predicate type of a gate run's attestation. Its predicate records the gate (name and
version), each metric with its value, threshold and baseline value, the verdict and the
sign-offs; the statement's subjects pin the model, the SAEs, the prompt set and the baseline by
sha256. The URI names the schema; bump ``v1`` when a field changes meaning or goes away."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


class AttestationError(ValueError):
    """An attestation cannot be made or does not verify; the message says what is wrong."""


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement whose envelope carries a valid signature by the key ``keyid``."""

    statement: dict[str, Any]
    keyid: str

    @property
    def predicate_type(self) -> str:
        return str(self.statement["predicateType"])

    @property
    def predicate(self) -> dict[str, Any]:
        predicate: dict[str, Any] = self.statement.get("predicate", {})
        return predicate


def statement(
    *, subjects: list[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 about ``subjects`` (name, sha256 hex), ready to sign."""
    if not subjects:
        raise AttestationError("A statement needs at least one subject.")
    for name, digest in subjects:
        if not _SHA256_HEX.fullmatch(digest):
            raise AttestationError(
                f"The digest of subject {name!r} is not a lowercase sha256 hex string: {digest!r}."
            )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def key_id(public_key: PublicKeyTypes) -> str:
    """The sha256 hex of the key's DER SubjectPublicKeyInfo: the same key always has the same
    id, whichever file or certificate it came from."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: one byte sequence for one statement."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:  # NaN or infinity: not JSON
        raise AttestationError(f"The statement cannot be written as JSON: {exc}.") from None
    return text.encode("utf-8")


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, binding the type to the body."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def sign_envelope(
    statement: dict[str, Any], private_key: PrivateKey, *, keyid: str | None = None
) -> dict[str, Any]:
    """``statement`` signed by ``private_key`` as a DSSE envelope (a JSON-ready dict).
    ``keyid`` defaults to ``key_id`` of the key's public half."""
    _check_statement(statement)
    body = canonical_json(statement)
    message = pae(PAYLOAD_TYPE, body)
    if isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(message, _PSS, hashes.SHA256())
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        raise TypeError(f"Attestations are signed with RSA or EC keys, not {type(private_key)}.")
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [
            {
                "keyid": keyid if keyid is not None else key_id(private_key.public_key()),
                "sig": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }


def verify_envelope(
    envelope: dict[str, Any] | bytes | str,
    public_keys: Sequence[PublicKeyTypes | x509.Certificate],
    *,
    predicate_type: str | None = None,
) -> VerifiedStatement:
    """The statement in ``envelope`` once one of its signatures verifies with one of
    ``public_keys`` (RSA or EC keys, or certificates). With ``predicate_type``, the statement
    must be of that type. Raises ``AttestationError`` naming what is wrong, and nothing else.

    As DSSE asks, a signature's ``keyid`` only picks the key to try (one without a keyid is
    tried against every key); the decision rests on the signature alone.
    """
    keys = {key_id(k): k for k in map(_public_key, public_keys)}
    if not keys:
        raise AttestationError("There is no public key to verify the attestation with.")
    fields = _envelope_fields(envelope)
    body = _b64decode(fields["payload"], "The envelope's payload")
    message = pae(PAYLOAD_TYPE, body)
    tried: list[str] = []
    for number, entry in enumerate(fields["signatures"], start=1):
        keyid = entry.get("keyid") or ""
        candidates = [keyid] if keyid in keys else ([] if keyid else list(keys))
        if not candidates:
            continue
        signature = _b64decode(entry["sig"], f"The sig of signature {number}")
        for candidate in candidates:
            tried.append(candidate)
            if _signature_valid(keys[candidate], signature, message):
                parsed = _parse_statement(body)
                if predicate_type is not None and parsed["predicateType"] != predicate_type:
                    raise AttestationError(
                        f"The statement's predicateType is {parsed['predicateType']!r}, "
                        f"expected {predicate_type!r}."
                    )
                return VerifiedStatement(statement=parsed, keyid=candidate)
    if not tried:
        found = ", ".join(str(e.get("keyid") or "(none)") for e in fields["signatures"])
        raise AttestationError(
            f"No signature is from a known key: the envelope's key ids are {found}; the known "
            f"keys are {', '.join(keys)}."
        )
    raise AttestationError(
        "The signature does not verify: the attestation was changed after it was signed, or "
        f"signed with another key than {', '.join(dict.fromkeys(tried))}."
    )


# --- checking what came in -------------------------------------------------------------------


def _public_key(key: PublicKeyTypes | x509.Certificate) -> PublicKey:
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise AttestationError(f"Attestations are verified with RSA or EC keys, not {public!r}.")
    return public


def _signature_valid(key: PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, _PSS, hashes.SHA256())
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):  # ValueError: a signature that is not even DER
        return False
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse a JSON object with a key twice: two parsers could read two different values."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice")
        result[key] = value
    return result


def _loads(data: bytes | str) -> Any:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, object_pairs_hook=_no_duplicates)


def _envelope_fields(envelope: dict[str, Any] | bytes | str) -> dict[str, Any]:
    """The envelope's fields once they have the shapes DSSE gives them."""
    if isinstance(envelope, bytes | str):
        try:
            envelope = _loads(envelope)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise AttestationError(f"The attestation is not JSON: {exc}.") from None
    if not isinstance(envelope, dict):
        raise AttestationError("The attestation is not a DSSE envelope (a JSON object).")
    for name in ("payloadType", "payload", "signatures"):
        if name not in envelope:
            raise AttestationError(f"The envelope has no {name!r} field.")
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise AttestationError(
            f"The envelope's payloadType is {envelope['payloadType']!r}, expected "
            f"{PAYLOAD_TYPE!r} (an in-toto statement)."
        )
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise AttestationError("The envelope's 'signatures' is not a non-empty list.")
    for number, entry in enumerate(signatures, start=1):
        if not isinstance(entry, dict) or "sig" not in entry:
            raise AttestationError(f"Signature {number} of the envelope has no 'sig' field.")
        if not isinstance(entry.get("keyid", ""), str):
            raise AttestationError(f"The keyid of signature {number} is not a string.")
    return envelope


def _b64decode(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE allows each), in its one canonical
    spelling: otherwise a changed last character could decode to the same bytes."""
    if not isinstance(text, str):
        raise AttestationError(f"{what} is not a base64 string.")
    standard = text.translate(str.maketrans("-_", "+/"))
    try:
        data = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"{what} is not valid base64.") from None
    if base64.b64encode(data).decode("ascii").rstrip("=") != standard.rstrip("="):
        raise AttestationError(f"{what} is not valid base64 (not in its canonical form).")
    return data


def _parse_statement(body: bytes) -> dict[str, Any]:
    try:
        parsed = _loads(body)
    except (ValueError, RecursionError) as exc:
        raise AttestationError(f"The signed payload is not JSON: {exc}.") from None
    _check_statement(parsed)
    result: dict[str, Any] = parsed
    return result


def _check_statement(value: Any) -> None:
    """Raise ``AttestationError`` unless ``value`` has the shape of an in-toto Statement v1."""
    if not isinstance(value, dict):
        raise AttestationError("The statement is not a JSON object.")
    if value.get("_type") != STATEMENT_TYPE:
        raise AttestationError(
            f"The statement's _type is {value.get('_type')!r}, expected {STATEMENT_TYPE!r}."
        )
    subjects = value.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise AttestationError("The statement's 'subject' is not a non-empty list.")
    for number, subject in enumerate(subjects, start=1):
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if (
            not isinstance(digest, dict)
            or not digest
            or not all(isinstance(v, str) for v in digest.values())
        ):
            raise AttestationError(f"Subject {number} of the statement has no digest.")
    if not isinstance(value.get("predicateType"), str) or not value["predicateType"]:
        raise AttestationError("The statement has no 'predicateType'.")
    if not isinstance(value.get("predicate", {}), dict):
        raise AttestationError("The statement's 'predicate' is not a JSON object.")
