"""What an export holds, written as one zip (stdlib ``zipfile``, no pickle anywhere).

A run's export: the run's bundle (its ``manifest.json`` and every chunk's two Parquet files, as
stored), ``prompts.jsonl`` (each trace's prompt and completion, redacted) and, for a profile
whose export policy asks for documentation (FR), ``redaction_report.json``. A Parquet tokens
file whose token ids would spell out personal data (the ids of the tokens that ``redact_tokens``
redacts) is rewritten with those ids replaced by -1; every other file is copied byte for byte.

A case's export: ``case.json`` (fields, evidence with its pins, sign-offs, comments; every free
text redacted), one ``traces/trace-<id>.json`` per cited trace (its token strings, redacted and
aligned with the activations) and the signed ``report.pdf`` when the case has one.

Both carry ``manifest.json``: what, who, when, the profile, and the sha256 of every other file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

from django.utils import timezone

from governance.models import Export, ExportKind
from governance.services.export_contents import case_contents, run_contents
from governance.services.export_zip import ZipWriter, username_of
from scopeweb.redaction import Redacted, redaction_report
from scopeweb.retention.models import ExportPolicy
from scopeweb.storage import file_sha256
from traces.tokens import Decode, tokenizer_decode

EXPORT_FORMAT = "scopeweb-export/1"
EXPORT_MANIFEST = "manifest.json"  # the export's own manifest (the run's is under run/)


@dataclass
class Built:
    """The zip (an open temporary file, at its start), its sha256 and size, and the redaction
    report of everything that was redacted for it."""

    handle: IO[bytes]
    sha256: str
    size_bytes: int
    redaction_report: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)


def export_build(export: Export, *, decode: Decode | None = None) -> Built:
    """Write ``export``'s zip to a temporary file and return it with its hashes. Raises
    ``ExportBuildError`` when what it should hold is gone or no longer matches its record."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, who closes it)
    try:
        out = ZipWriter(handle)
        redacted: list[Redacted] = []
        if export.kind == ExportKind.RUN:
            source = run_contents(export, out, redacted, decode or tokenizer_decode)
        else:
            source = case_contents(export, out, redacted, decode or tokenizer_decode)
        report = redaction_report(redacted, export.profile)
        if "redacted_before_storage" in source:  # UK, FR: the prompts were stored redacted
            report["before_storage"] = source["redacted_before_storage"]
        documented = export.profile.export_policy == ExportPolicy.CNIL_DOCUMENTED
        if documented:
            out.add_json("redaction_report.json", report)
        out.add_json(EXPORT_MANIFEST, _manifest(export, source, out.files, report, documented))
        out.close()
        handle.seek(0)
        sha256 = file_sha256(handle)
        size = handle.tell()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return Built(handle, sha256, size, report, out.files)


def _manifest(
    export: Export,
    source: dict[str, Any],
    files: list[dict[str, Any]],
    report: dict[str, Any],
    documented: bool,
) -> dict[str, Any]:
    profile = export.profile
    return {
        "format": EXPORT_FORMAT,
        "export": export.pk,
        "what": {"kind": export.kind, "id": export.target_id, "name": export.target_repr},
        "purpose": export.purpose,
        "requested_by": username_of(export.requested_by),
        "requested_at": export.requested_at.isoformat(),
        "approved_by": username_of(export.decided_by),
        "approved_at": export.decided_at.isoformat() if export.decided_at else None,
        "built_at": timezone.now().isoformat(),
        "profile": {
            "code": profile.code,
            "name": profile.name,
            "redaction": profile.redaction,
            "export_policy": profile.export_policy,
            "retention_days": profile.retention_days,
        },
        "redaction": {
            "applied_to": "every text and token string in this export",
            "counts": report["counts"],
            "report": "redaction_report.json" if documented else None,
        },
        "source": source,
        "files": sorted(files, key=lambda f: f["name"]),
    }


# --- a case ---------------------------------------------------------------------------------
