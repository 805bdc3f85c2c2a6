"""What an export holds: a run's bundle, its prompts and completions (redacted), or a case's
fields, evidence, cited traces and signed report (see ``governance.services.export_build``)."""

from __future__ import annotations

import json
from typing import Any

from governance.models import Export
from governance.services.export_zip import ExportBuildError, ZipWriter, read_artifact, username_of
from reports.models import AuditCase, CaseReport
from scopeweb.redaction import Redacted, redact_text, redact_tokens
from scopeweb.storage import bytes_sha256
from traces.bundle.export import MASKED_TOKEN_ID, mask_token_ids, token_ids
from traces.bundle.format import CHUNK_PARTS, chunk_file_name, chunk_name
from traces.bundle.manifest import MANIFEST_NAME, ManifestError, manifest_load
from traces.models import AnalysisRun, Trace
from traces.selectors.trace_tokens import ArraysGone, trace_token_view
from traces.tokens import Decode, piece_text


def run_contents(
    export: Export, out: ZipWriter, redacted: list[Redacted], decode: Decode
) -> dict[str, Any]:
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
        tokens_data = read_artifact(names["tokens"])
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
        # A prompt's id is free text from the file: redacted too (US stores it as given).
        prompt_id = redact_text(trace.prompt.external_id, export.profile)
        redacted += [text, completion, prompt_id]
        lines.append(
            json.dumps(
                {
                    "trace": trace.pk,
                    "prompt_position": trace.prompt.position,
                    "prompt_id": prompt_id.text or None,
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


def case_contents(
    export: Export, out: ZipWriter, redacted: list[Redacted], decode: Decode
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
        "opened_by": username_of(found.opened_by),
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
                "added_by": username_of(item.added_by),
                "added_at": item.added_at,
                "added_from": item.added_from,
                "pins": item.pins,
            }
            for item in evidence
        ],
        "sign_offs": [
            {
                "signer": username_of(s.signer),
                "statement": clean(s.statement),
                "signed_at": s.signed_at,
            }
            for s in found.sign_offs.select_related("signer").order_by("signed_at", "id")
        ],
        "comments": [
            {"author": username_of(c.author), "body": clean(c.body), "created_at": c.created_at}
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
