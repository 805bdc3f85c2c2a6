"""The deployment's signing key, and signing a PDF with it (PAdES, pyHanko).

The key and its certificate come from a PKCS#12 file (``SCOPEWEB_SIGNING_P12``) and its
passphrase (``SCOPEWEB_SIGNING_P12_PASSPHRASE`` or ``…_FILE``). The embedded default is a
self-signed development key that ``manage.py init_signing_key`` writes into the data directory,
with its passphrase in a file beside it. With ``SCOPEWEB_TSA_URL`` set, each signature carries
an RFC 3161 timestamp from that server (PAdES B-T); without it, PAdES B-B.

Nothing here is cached between calls: a key rotated on disk is used by the next report.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from django.conf import settings

PASSPHRASE_SUFFIX = ".passphrase"  # noqa: S105 (a file-name suffix, not a secret)
SIGNATURE_FIELD = "ScopeWebReport"
DEV_CERT_DAYS = 3 * 365


class SigningError(Exception):
    """The report cannot be signed; the message says why, in words for the job's user."""


@dataclass(frozen=True)
class SigningKey:
    path: Path
    signer: object  # pyhanko.sign.signers.SimpleSigner (imported lazily: pyHanko is heavy)
    certificate: asn1_x509.Certificate

    @property
    def subject(self) -> str:
        return certificate_subject(self.certificate)

    @property
    def self_signed(self) -> bool:
        return certificate_self_signed(self.certificate)


def certificate_subject(cert: asn1_x509.Certificate) -> str:
    return str(cert.subject.human_friendly)


def certificate_self_signed(cert: asn1_x509.Certificate) -> bool:
    """Subject equals issuer: nobody but the key's holder vouches for it."""
    return bool(cert.subject == cert.issuer)


def signing_key_path() -> Path:
    return Path(settings.SIGNING_P12_PATH)


def default_passphrase_path(p12: Path) -> Path:
    return p12.with_name(p12.name + PASSPHRASE_SUFFIX)


def signing_passphrase(p12: Path) -> bytes | None:
    """The configured passphrase, else the one ``init_signing_key`` left beside the file."""
    if settings.SIGNING_P12_PASSPHRASE is not None:
        return str(settings.SIGNING_P12_PASSPHRASE).encode()
    beside = default_passphrase_path(p12)
    if beside.exists():
        return beside.read_text(encoding="utf-8").strip().encode()
    return None


def signing_key_load() -> SigningKey:
    """The deployment's key and certificate. Raises ``SigningError`` naming what is wrong."""
    from pyhanko.sign.signers import SimpleSigner

    path = signing_key_path()
    if not path.exists():
        raise SigningError(
            f"No signing key at {path}. Set SCOPEWEB_SIGNING_P12 to the deployment's PKCS#12 "
            "file, or run `manage.py init_signing_key` for a self-signed development key."
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"The signing key {path} cannot be read: {exc.strerror}.") from None
    try:
        signer = SimpleSigner.load_pkcs12_data(data, [], passphrase=signing_passphrase(path))
    except ValueError:
        raise SigningError(
            f"The signing key {path} cannot be opened: the passphrase "
            "(SCOPEWEB_SIGNING_P12_PASSPHRASE) is wrong or the file is not PKCS#12."
        ) from None
    cert = signer.signing_cert
    now = datetime.now(UTC)
    if cert.not_valid_after < now:
        raise SigningError(
            f"The signing certificate ({certificate_subject(cert)}) expired on "
            f"{cert.not_valid_after:%Y-%m-%d}."
        )
    return SigningKey(path=path, signer=signer, certificate=cert)


def signing_certificate() -> asn1_x509.Certificate | None:
    """The deployment's certificate when its key can be opened (for verification)."""
    try:
        return signing_key_load().certificate
    except SigningError:
        return None


@dataclass(frozen=True)
class Signed:
    data: bytes
    subject: str
    self_signed: bool
    timestamped: bool


def sign_pdf(
    pdf: bytes, *, reason: str, location: str = "", key: SigningKey | None = None
) -> Signed:
    """Sign ``pdf`` with the deployment's key as PAdES B-B, or B-T with a timestamp server.
    Raises ``SigningError`` (never returns an unsigned document)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers, timestamps
    from pyhanko.sign.general import SigningError as HankoSigningError

    key = key or signing_key_load()
    timestamper = None
    if settings.SIGNING_TSA_URL:
        timestamper = timestamps.HTTPTimeStamper(
            settings.SIGNING_TSA_URL, timeout=settings.SIGNING_TSA_TIMEOUT
        )
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location or None,
    )
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        out = signers.sign_pdf(writer, meta, signer=key.signer, timestamper=timestamper)  # type: ignore[arg-type]
    except (HankoSigningError, OSError, ValueError) as exc:
        where = f" (timestamp server {settings.SIGNING_TSA_URL})" if timestamper else ""
        raise SigningError(f"Signing failed{where}: {exc}") from None
    except Exception as exc:  # pyHanko wraps network and ASN.1 errors in many types
        if timestamper is not None:
            raise SigningError(
                f"The timestamp server {settings.SIGNING_TSA_URL} did not answer usably: {exc}"
            ) from None
        raise
    return Signed(
        data=out.getvalue(),
        subject=key.subject,
        self_signed=key.self_signed,
        timestamped=timestamper is not None,
    )


# --- the development key ---------------------------------------------------------------------


def dev_key_create(path: Path, *, common_name: str, passphrase: str | None = None) -> str:
    """Write a self-signed RSA-3072 key and certificate as PKCS#12 at ``path`` (0600); returns
    the passphrase. Without one, a passphrase is generated and written beside the file (0600),
    where ``signing_passphrase`` finds it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    generated = not passphrase
    passphrase = passphrase or secrets.token_urlsafe(24)
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Scope Web (development key)"),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=DEV_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        name=common_name.encode(),
        key=key,
        cert=cert,
        cas=None,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase.encode()),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, data)
    beside = default_passphrase_path(path)
    if generated:
        _write_private(beside, passphrase.encode())
    elif beside.exists():  # a stale generated passphrase would shadow nothing, but mislead
        beside.unlink()
    return passphrase


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_bytes(data)
    tmp.replace(path)


def signing_timestamps() -> bool:
    """Whether signatures get an RFC 3161 timestamp (a timestamp server is configured)."""
    return bool(settings.SIGNING_TSA_URL)
