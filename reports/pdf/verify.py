"""Checking a PDF's signature (pyHanko) and whether it is a report this deployment issued.

The signature is validated against this deployment's certificate as the only trust anchor, with
no network fetching: a report signed here is trusted, any other signer is reported untrusted
(its signature may still be intact and valid). A self-signed signer is noted as such. The file's
sha256 is looked up among the issued reports, so a byte-for-byte copy is recognised.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime

from reports.models import CaseReport
from reports.pdf.signing import certificate_self_signed, certificate_subject, signing_certificate

log = logging.getLogger(__name__)
PDF_HEADER_WITHIN = 1024  # readers accept the %PDF- header anywhere in the first 1 KiB


@dataclass
class VerifyResult:
    """What a verification found. ``valid``: the signature is intact and cryptographically
    sound; ``whole_file``: it covers the whole file (nothing appended after signing)."""

    sha256: str
    size_bytes: int
    problem: str = ""  # why the file could not be checked at all
    signed: bool = False
    intact: bool = False
    valid: bool = False
    whole_file: bool = False
    trusted: bool = False
    self_signed: bool = False
    deployment_key: bool = False  # signed with this deployment's current certificate
    signer_subject: str = ""
    signing_time: datetime | None = None
    timestamp: datetime | None = None
    timestamp_valid: bool | None = None
    timestamp_authority: str = ""  # the subject of the timestamp's signer (the TSA)
    signatures: int = 0
    report: CaseReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def issued_here(self) -> bool:
        return self.report is not None and self.valid and self.whole_file

    @property
    def ok(self) -> bool:
        return self.valid and self.whole_file

    @property
    def verdict(self) -> str:
        if self.problem:
            return self.problem
        if not self.ok:
            return "The signature does NOT hold: the file was changed after it was signed."
        if self.issued_here:
            return "Valid signature on a report this deployment issued."
        return "Valid signature, but this file is not a report this deployment issued."


def report_verify(data: bytes) -> VerifyResult:
    """Validate the signature of the PDF ``data`` and look its sha256 up among issued reports.
    Never raises for a bad file: ``problem`` says what is wrong with it."""
    result = VerifyResult(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    if b"%PDF-" not in data[:PDF_HEADER_WITHIN]:
        result.problem = "The file is not a PDF (no %PDF- header)."
        return result
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = list(reader.embedded_signatures)
    except Exception as exc:  # a damaged PDF fails in many places inside the parser
        result.problem = f"The PDF cannot be read: {type(exc).__name__}: {exc}"[:500]
        return result
    result.signatures = len(signatures)
    if not signatures:
        result.problem = "The PDF carries no signature."
        return result
    result.signed = True
    if len(signatures) > 1:
        result.notes.append(f"The file carries {len(signatures)} signatures; the last is checked.")
    embedded = signatures[-1]
    ours = signing_certificate()
    context = ValidationContext(trust_roots=[ours] if ours else [], allow_fetching=False)
    try:
        status = validate_pdf_signature(embedded, context)
    except Exception as exc:  # a changed byte can break the CMS structure itself
        log.info("signature validation failed: %s", exc)
        result.notes.append(f"The signature cannot be validated: {type(exc).__name__}: {exc}")
        try:
            cert = embedded.signer_cert
            result.signer_subject = certificate_subject(cert)
            result.self_signed = certificate_self_signed(cert)
        except Exception:  # the signature's certificates themselves may be damaged
            log.info("signer certificate unreadable", exc_info=True)
        result.report = CaseReport.objects.filter(sha256=result.sha256).first()
        return result
    cert = status.signing_cert
    result.intact = bool(status.intact)
    result.valid = bool(status.intact and status.valid)
    result.whole_file = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    result.trusted = bool(status.trusted)
    result.signer_subject = certificate_subject(cert)
    result.self_signed = certificate_self_signed(cert)
    result.deployment_key = ours is not None and cert.dump() == ours.dump()
    result.signing_time = status.signer_reported_dt
    if status.timestamp_validity is not None:
        result.timestamp = status.timestamp_validity.timestamp
        result.timestamp_valid = bool(
            status.timestamp_validity.intact and status.timestamp_validity.valid
        )
        result.timestamp_authority = certificate_subject(status.timestamp_validity.signing_cert)
    if result.valid and not result.whole_file:
        result.notes.append("Content was appended to the file after it was signed.")
    if result.self_signed:
        result.notes.append(
            "The signer's certificate is self-signed: no certificate authority vouches for it."
        )
    if not result.trusted:
        result.notes.append(
            "The signer's certificate is not this deployment's: the signature is not trusted here."
        )
    result.report = CaseReport.objects.filter(sha256=result.sha256).select_related("case").first()
    return result
