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

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

from django.utils import timezone

from governance.models import Export, ExportKind
from reports.models import AuditCase, CaseReport
from scopeweb.redaction import Redacted, redact_text, redact_tokens, redaction_report
from scopeweb.retention.models import ExportPolicy
from scopeweb.storage import bytes_sha256, file_sha256, hashed_copy, open_stored, read_bytes
from traces.bundle.export import MASKED_TOKEN_ID, mask_token_ids, token_ids
from traces.bundle.format import chunk_file_name
from traces.bundle.manifest import MANIFEST_NAME, ManifestError, manifest_load
from traces.models import AnalysisRun, Trace
from traces.tokens import Decode

EXPORT_FORMAT = "scopeweb-export/1"
EXPORT_MANIFEST = "manifest.json"  # the export's own manifest (the run's is under run/)


class ExportBuildError(Exception):
    """The export cannot be built; the message says why (it fails the export's job)."""


def _default_decode(ids: list[int]) -> list[str]:
    from traces.tokens import tokenizer_decode

    return tokenizer_decode(ids)


@dataclass
class Built:
    """The zip (an open temporary file, at its start), its sha256 and size, and the redaction
    report of everything that was redacted for it."""

    handle: IO[bytes]
    sha256: str
    size_bytes: int
    redaction_report: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)


class _Zip:
    """A zip being written, remembering each member's sha256 and size for the manifest."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(handle, "w", allowZip64=True)
        self.files: list[dict[str, Any]] = []
        self._when = timezone.now().timetuple()[:6]

    def _info(self, name: str, compress: bool) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self._when)  # type: ignore[arg-type]
        # Parquet and PDF are compressed already; JSON is not.
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        return info

    def add_bytes(self, name: str, data: bytes, *, compress: bool = True, **extra: Any) -> None:
        self.zip.writestr(self._info(name, compress), data)
        self.files.append({"name": name, "sha256": bytes_sha256(data), "bytes": len(data)} | extra)

    def add_json(self, name: str, value: Any) -> None:
        data = (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode()
        self.add_bytes(name, data)

    def add_stored(self, name: str, artifact: str, *, expected_sha256: str = "") -> None:
        """Copy a stored artifact in blocks; refuse it when it no longer matches its record."""
        try:
            with (
                open_stored(artifact) as source,
                self.zip.open(self._info(name, False), "w", force_zip64=True) as target,
            ):
                copied = hashed_copy(source, target)
        except OSError as exc:
            raise ExportBuildError(f"The stored file {artifact} cannot be read ({exc}).") from exc
        if expected_sha256 and copied.sha256 != expected_sha256:
            raise ExportBuildError(
                f"The stored file {artifact} no longer matches its recorded sha256 "
                f"(now {copied.sha256}, recorded {expected_sha256}); it is not exported."
            )
        self.files.append({"name": name, "sha256": copied.sha256, "bytes": copied.size})

    def close(self) -> None:
        self.zip.close()


def _read(artifact: str) -> bytes:
    try:
        return read_bytes(artifact)
    except OSError as exc:
        raise ExportBuildError(f"The stored file {artifact} cannot be read ({exc}).") from exc


def _who(user: Any) -> str | None:
    return getattr(user, "username", None) if user is not None else None


def export_build(export: Export, *, decode: Decode | None = None) -> Built:
    """Write ``export``'s zip to a temporary file and return it with its hashes. Raises
    ``ExportBuildError`` when what it should hold is gone or no longer matches its record."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, who closes it)
    try:
        out = _Zip(handle)
        redacted: list[Redacted] = []
        if export.kind == ExportKind.RUN:
            source = _run_contents(export, out, redacted, decode or _default_decode)
        else:
            source = _case_contents(export, out, redacted, decode or _default_decode)
        report = redaction_report(redacted)
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
        "requested_by": _who(export.requested_by),
        "requested_at": export.requested_at.isoformat(),
        "approved_by": _who(export.decided_by),
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


# --- a run ----------------------------------------------------------------------------------


def _run_contents(
    export: Export, out: _Zip, redacted: list[Redacted], decode: Decode
) -> dict[str, Any]:
    from traces.bundle.format import CHUNK_PARTS, chunk_name

    run = AnalysisRun.objects.select_related("sae", "prompt_set").filter(pk=export.target_id)
    found = run.first()
    if found is None:
        raise ExportBuildError(f"Run {export.target_id} no longer exists.")
    prefix = found.artifact_prefix
    try:
        manifest = manifest_load(found)
    except ManifestError as exc:
        raise ExportBuildError(str(exc)) from exc
    manifest_sha = manifest.sha256
    out.add_bytes(f"run/{MANIFEST_NAME}", manifest.data)
    recorded = manifest.chunk_files
    traces = list(
        Trace.objects.filter(run=found).select_related("prompt").order_by("prompt__position")
    )
    masked_total = 0
    for index in sorted(recorded):
        names = {part: chunk_name(prefix, index, part) for part in CHUNK_PARTS}
        tokens_data = _read(names["tokens"])
        if bytes_sha256(tokens_data) != recorded[index]["tokens"]:
            raise ExportBuildError(
                f"{names['tokens']} no longer matches the manifest of run {found.pk}."
            )
        in_chunk = [t for t in traces if t.chunk == index]
        masked = _masked_rows(tokens_data, in_chunk, export, decode)
        tokens_name = "run/" + chunk_file_name(index, "tokens")
        if masked:
            masked_total += len(masked)
            out.add_bytes(
                tokens_name,
                mask_token_ids(tokens_data, masked),
                compress=False,
                source_sha256=recorded[index]["tokens"],
                masked_token_ids=len(masked),
            )
        else:
            out.add_bytes(tokens_name, tokens_data, compress=False)
        out.add_stored(
            "run/" + chunk_file_name(index, "features"),
            names["features"],
            expected_sha256=recorded[index]["features"],
        )
    lines = []
    for trace in traces:
        text = redact_text(trace.prompt.text, export.profile)
        completion = redact_text(trace.completion, export.profile)
        redacted += [text, completion]
        lines.append(
            json.dumps(
                {
                    "trace": trace.pk,
                    "prompt_position": trace.prompt.position,
                    "prompt_id": trace.prompt.external_id or None,
                    "text": text.text,
                    "text_sha256": trace.prompt.text_sha256 or None,
                    "completion": completion.text,
                    "redacted": _merge_counts(text.counts, completion.counts),
                    "redacted_before_storage": trace.prompt.redactions or {},
                    "chunk": trace.chunk,
                    "row": trace.row,
                    "tokens": trace.tokens,
                    "prompt_tokens": trace.prompt_tokens,
                    "truncated": trace.truncated,
                    "arrays_sha256": trace.arrays_sha256,
                    "l0": trace.l0,
                    "fvu": trace.fvu,
                    "resid_norm": trace.resid_norm,
                },
                sort_keys=True,
            )
        )
    out.add_bytes("prompts.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
    return {
        "run": found.pk,
        "prompt_set": found.prompt_set.name,
        "sae": found.sae.name,
        "run_manifest_sha256": manifest_sha,
        "traces": len(traces),
        "masked_token_ids": masked_total,
        "token_id_mask": MASKED_TOKEN_ID,
        "redacted_before_storage": {
            "items": sum(1 for trace in traces if trace.prompt.redactions),
            "counts": _merge_counts(*(trace.prompt.redactions or {} for trace in traces)),
        },
    }


def _merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for each in counts:
        for category, n in each.items():
            merged[category] = merged.get(category, 0) + n
    return dict(sorted(merged.items()))


def _masked_rows(data: bytes, traces: list[Trace], export: Export, decode: Decode) -> list[int]:
    """The chunk rows of the tokens that redaction would hide (a token id spells out its
    text)."""
    from traces.tokens import piece_text

    if not traces:
        return []
    ids = token_ids(data)
    rows: list[int] = []
    for trace in traces:
        span = ids[trace.row : trace.row + trace.tokens]
        pieces = [piece_text(p) for p in decode([int(i) for i in span])]
        _, categories = redact_tokens(pieces, export.profile)
        rows += [trace.row + at for at, category in enumerate(categories) if category]
    return rows


# --- a case ---------------------------------------------------------------------------------


def _case_contents(
    export: Export, out: _Zip, redacted: list[Redacted], decode: Decode
) -> dict[str, Any]:
    case = AuditCase.objects.select_related("profile", "opened_by").filter(pk=export.target_id)
    found = case.first()
    if found is None:
        raise ExportBuildError(f"Case {export.target_id} no longer exists.")
    profile = export.profile

    def clean(value: str) -> str:
        result = redact_text(value, profile)
        redacted.append(result)
        return result.text

    evidence = list(
        found.evidence.select_related("trace__run", "trace__prompt", "added_by").order_by("id")
    )
    body = {
        "id": found.pk,
        "title": clean(found.title),
        "description": clean(found.description),
        "severity": found.severity,
        "state": found.state,
        "profile": found.profile.code,
        "opened_by": _who(found.opened_by),
        "opened_at": found.opened_at,
        "assignees": sorted(u.username for u in found.assignees.all()),
        "summary": clean(found.summary),
        "signed_off_at": found.signed_off_at,
        "closed_at": found.closed_at,
        "close_reason": clean(found.close_reason),
        "evidence": [
            {
                "id": item.pk,
                "trace": item.trace_id,
                "run": item.trace.run_id,
                "prompt_position": item.trace.prompt.position,
                "token_start": item.token_start,
                "token_end": item.token_end,
                "features": item.features,
                "token_text": clean(item.token_text),
                "note": clean(item.note),
                "added_by": _who(item.added_by),
                "added_at": item.added_at,
                "added_from": item.added_from,
                "pins": item.pins,
            }
            for item in evidence
        ],
        "sign_offs": [
            {"signer": _who(s.signer), "statement": clean(s.statement), "signed_at": s.signed_at}
            for s in found.sign_offs.select_related("signer").order_by("signed_at", "id")
        ],
        "comments": [
            {"author": _who(c.author), "body": clean(c.body), "created_at": c.created_at}
            for c in found.comments.select_related("author").order_by("created_at", "id")
        ],
    }
    out.add_json("case.json", body)
    cited = {item.trace_id: item.trace for item in evidence}
    gone = []
    for trace_id, trace in sorted(cited.items()):
        tokens = _trace_tokens(trace, export, redacted, decode)
        if tokens is None:
            gone.append(trace_id)
        else:
            out.add_json(f"traces/trace-{trace_id}.json", tokens)
    report = CaseReport.objects.filter(case=found).first()
    if report is not None:
        out.add_stored("report.pdf", report.artifact, expected_sha256=report.sha256)
    return {
        "case": found.pk,
        "state": found.state,
        "traces": sorted(cited),
        "traces_gone": gone,
        "report_sha256": report.sha256 if report is not None else None,
    }


def _trace_tokens(
    trace: Trace, export: Export, redacted: list[Redacted], decode: Decode
) -> dict[str, Any] | None:
    """A cited trace's tokens, redacted token by token so that they stay aligned with their
    activations, or None when its arrays are no longer stored."""
    from traces.selectors.trace_tokens import ArraysGone, trace_token_view

    try:
        view = trace_token_view(trace, decode=decode)
    except ArraysGone:
        return None
    texts = [token.text for token in view.tokens]
    shown, categories = redact_tokens(texts, export.profile)
    # For the redaction report: what the same detection finds in the trace's text.
    redacted.append(redact_text("".join(texts), export.profile))
    return {
        "trace": trace.pk,
        "run": trace.run_id,
        "prompt_position": trace.prompt.position,
        "arrays_sha256": trace.arrays_sha256,
        "tokens": [
            {
                "position": token.position,
                "text": text,
                "redacted": category,
                "is_completion": token.is_completion,
                "l0": token.l0,
                "features": [[f, round(v, 4)] for f, v in token.features],
            }
            for token, text, category in zip(view.tokens, shown, categories, strict=True)
        ],
    }
