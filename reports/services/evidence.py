"""Evidence on a case: tokens of a trace and the features that matter there, each piece
pinned by the sha256 of what it cites (the run's manifest, the trace's chunk files, the arrays
and the token text), so a report can prove later that nothing it cites has changed."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from reports.models import AuditCase, Evidence
from reports.services.cases import case_locked, clean_text, refuse_if_read_only
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.storage import bytes_sha256, stored_digest
from traces.bundle.format import CHUNK_PARTS, chunk_name
from traces.bundle.manifest import ManifestError, ManifestMissing, manifest_load
from traces.models import Trace
from traces.selectors import trace_tokens

FEATURES_MAX = 64
EVIDENCE_TOKENS_MAX = 1000


def _parse_features(features: Iterable[int], width: int) -> list[int]:
    found: list[int] = []
    for raw in features:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValidationError({"features": f"Feature {raw!r} is not a whole number."})
        if not 0 <= raw < width:
            raise ValidationError(
                {"features": f"Feature {raw} is outside the SAE's width (0 to {width - 1})."}
            )
        if raw not in found:
            found.append(raw)
    if len(found) > FEATURES_MAX:
        raise ValidationError(
            {"features": f"{len(found)} features; at most {FEATURES_MAX} per piece of evidence."}
        )
    return found


def _stored_sha256(name: str) -> str:
    try:
        return stored_digest(name).sha256
    except OSError as exc:
        raise ValidationError(
            {"trace": f"The artifact {name} is no longer stored ({exc}); it cannot be cited."}
        ) from exc


def evidence_pins(trace: Trace) -> dict[str, str]:
    """sha256 of every stored artifact a piece of evidence on ``trace`` cites: the run's
    manifest and the trace's two chunk files, each checked against what the run recorded (the
    manifest's sha256 on the run, the chunk files' sha256 in the manifest), plus the trace's
    own arrays hash. Raises ``ValidationError`` when one is gone or no longer matches."""
    run = trace.run
    try:
        manifest = manifest_load(run)
    except ManifestMissing as exc:
        raise ValidationError(
            {"trace": f"{exc} It is still running, or its bundle was purged; its traces "
             "cannot be cited yet."}
        ) from exc  # fmt: skip
    except ManifestError as exc:
        raise ValidationError({"trace": str(exc)}) from exc
    recorded = manifest.chunk_files.get(trace.chunk)
    if recorded is None:
        raise ValidationError(
            {"trace": f"The manifest of run {run.pk} does not record chunk {trace.chunk}."}
        )
    pins = {manifest.name: manifest.sha256}
    for part in CHUNK_PARTS:
        name = chunk_name(run.artifact_prefix, trace.chunk, part)
        pins[name] = _stored_sha256(name)
        if pins[name] != recorded[part]:
            raise ValidationError(
                {"trace": f"{name} no longer matches the manifest of run {run.pk} "
                 f"(sha256 {pins[name]}, recorded {recorded[part]})."}
            )  # fmt: skip
    pins[f"trace {trace.pk} arrays"] = trace.arrays_sha256
    return pins


def _range_text(trace: Trace, start: int, end: int) -> str:
    try:
        view = trace_tokens.trace_token_view(trace)
    except trace_tokens.ArraysGone as exc:
        raise ValidationError(
            {"trace": f"Trace {trace.pk}'s token arrays are no longer stored ({exc})."}
        ) from exc
    return "".join(token.text for token in view.tokens[start:end])


def evidence_add(
    *,
    case: AuditCase,
    actor: Actor,
    trace: Trace,
    token_start: int,
    token_end: int,
    features: Iterable[int] = (),
    note: str = "",
    added_from: str = "case",
) -> Evidence:
    """Cite tokens ``[token_start, token_end)`` of ``trace`` (positions as in the trace view,
    BOS at 0) and the features that matter there, with a note. Pins the sha256 of the run's
    manifest, the trace's chunk files and the range's text (see ``evidence_pins``)."""
    refuse_if_read_only(AuditCase.objects.get(pk=case.pk), "add evidence")  # before the slow checks
    trace = Trace.objects.select_related("run__sae", "run__profile").get(pk=trace.pk)
    if not 0 <= token_start < token_end:
        raise ValidationError(
            {"token_start": f"The range {token_start}–{token_end} is empty or negative: "
             "the start must be at least 0 and below the end (which is exclusive)."}
        )  # fmt: skip
    if token_end > trace.tokens:
        raise ValidationError(
            {"token_end": f"Trace {trace.pk} has {trace.tokens} tokens (0 to "
             f"{trace.tokens - 1}); the range ends at {token_end} (exclusive)."}
        )  # fmt: skip
    if token_end - token_start > EVIDENCE_TOKENS_MAX:
        raise ValidationError(
            {"token_end": f"{token_end - token_start} tokens; at most {EVIDENCE_TOKENS_MAX}."}
        )
    chosen = _parse_features(features, trace.run.sae.width)
    note = clean_text("note", note)
    if added_from not in ("case", "trace", "triage", "api"):
        raise ValueError(f"unknown evidence origin {added_from!r}")
    pins = evidence_pins(trace)
    text = _range_text(trace, token_start, token_end)
    pins["token text"] = bytes_sha256(text.encode())
    with transaction.atomic():
        case = case_locked(case)
        refuse_if_read_only(case, "add evidence")
        evidence = Evidence.objects.create(
            case=case,
            trace=trace,
            token_start=token_start,
            token_end=token_end,
            features=chosen,
            note=note,
            added_by=actor.person,
            added_from=added_from,
            pins=pins,
            token_text=text,
        )
        AuditCase.objects.filter(pk=case.pk).update(updated_at=timezone.now())
        audit_record(
            "case.evidence_add",
            actor=actor,
            obj=case,
            after={
                "evidence": evidence.pk,
                "trace": trace.pk,
                "tokens": [token_start, token_end],
                "features": chosen,
            },
            detail={"pins": pins, "from": added_from},
        )
    return evidence


def evidence_remove(*, case: AuditCase, actor: Actor, evidence: Evidence) -> None:
    """Take a piece of evidence off a case that is not read-only."""
    if evidence.case_id != case.pk:
        raise ValidationError({"evidence": f"Evidence {evidence.pk} is not on case {case.pk}."})
    with transaction.atomic():
        case = case_locked(case)
        refuse_if_read_only(case, "remove evidence")
        before = {
            "evidence": evidence.pk,
            "trace": evidence.trace_id,
            "tokens": [evidence.token_start, evidence.token_end],
            "features": evidence.features,
            "pins": evidence.pins,
        }
        evidence.delete()
        AuditCase.objects.filter(pk=case.pk).update(updated_at=timezone.now())
        audit_record("case.evidence_remove", actor=actor, obj=case, before=before)
