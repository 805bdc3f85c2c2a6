"""The deployment's key for gate attestations: the one that signs the PDF reports.

Signing and verifying themselves live in ``scopeweb_gate.attestation``, which CI runners install
without Scope Web; opening the deployment's PKCS#12 file needs the reports' settings, so it
lives here.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from reports.pdf.signing import SigningError, signing_key_load, signing_passphrase
from scopeweb_gate.attestation import PrivateKey


def deployment_signing_key() -> tuple[PrivateKey, x509.Certificate]:
    """The deployment's private key and certificate: the PKCS#12 file that signs the PDF
    reports, opened with the same passphrase, so that one certificate vouches for both.
    Raises ``reports.pdf.signing.SigningError`` naming what is wrong (no file, wrong
    passphrase, expired certificate), as report signing does."""
    loaded = signing_key_load()  # the reports' checks and their messages
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(
            loaded.path.read_bytes(), signing_passphrase(loaded.path)
        )
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"The signing key {loaded.path} cannot be opened: {exc}") from None
    if cert is None or not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError(
            f"The signing key {loaded.path} must hold an RSA or EC key and its certificate."
        )
    return key, cert


def deployment_certificate_pem() -> bytes:
    """The deployment's certificate as PEM, which anyone may hold to verify attestations."""
    return deployment_signing_key()[1].public_bytes(Encoding.PEM)
