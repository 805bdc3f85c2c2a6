"""Audit cases: opening and editing them, their state machine, evidence, comments and sign-off.

The states and the transitions ``case_transition`` allows:

    open              -> in_review          (work starts)
    in_review         -> awaiting_sign_off  (needs a non-empty executive summary)
    awaiting_sign_off -> in_review          (sent back for more work; sign-offs given so far are
                                              withdrawn, since they vouched for what is changing)
    open, in_review,
    awaiting_sign_off -> closed             (without sign-off; needs a reason)

    awaiting_sign_off -> signed_off         only through ``case_sign_off``, once the profile's
                                              number of distinct signers is reached

Every other move is refused with a ``CaseRefused`` naming both states. Signed-off and closed
cases are read-only: every edit (update, evidence, comment, transition, sign-off) is refused.
Each action records an audit event with ``obj=case``, so the case's history is its events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from reports.models import AuditCase, CaseComment, CaseState, Evidence, Severity, SignOff
from scopeweb.accounts.access import user_may
from scopeweb.audit.services import audit_record
from scopeweb.retention.models import RetentionProfile
from traces.bundle import CHUNK_PARTS, chunk_name
from traces.models import Trace

S = CaseState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.OPEN: frozenset({S.IN_REVIEW, S.CLOSED}),
    S.IN_REVIEW: frozenset({S.AWAITING_SIGN_OFF, S.CLOSED}),
    S.AWAITING_SIGN_OFF: frozenset({S.IN_REVIEW, S.CLOSED}),
    S.SIGNED_OFF: frozenset(),
    S.CLOSED: frozenset(),
}
STATE_NAMES: dict[str, str] = {
    S.OPEN: "open",
    S.IN_REVIEW: "in review",
    S.AWAITING_SIGN_OFF: "awaiting sign-off",
    S.SIGNED_OFF: "signed off",
    S.CLOSED: "closed",
}
UPDATABLE = ("title", "description", "severity", "summary")
TITLE_MAX = 200
TEXT_MAX = 20_000
FEATURES_MAX = 64
EVIDENCE_TOKENS_MAX = 1000
Actor = HttpRequest | Any | None


class CaseRefused(Exception):
    """The case's state or the sign-off rules refuse the action; the message says why."""


def _name(state: str) -> str:
    return STATE_NAMES.get(state, state)


def _audit(action: str, case: AuditCase, request: Actor, user: User | None, **kwargs: Any) -> None:
    if request is not None:
        audit_record(action, request=request, obj=case, **kwargs)
    else:
        audit_record(action, user=user, via="command", obj=case, **kwargs)


def _writable(case: AuditCase, doing: str) -> None:
    if case.read_only:
        raise CaseRefused(f"Case {case.pk} is {_name(case.state)} and read-only: cannot {doing}.")


def _locked(case: AuditCase) -> AuditCase:
    """The case's row, locked for this transaction, so two edits never race past a check."""
    return AuditCase.objects.select_for_update().select_related("profile").get(pk=case.pk)


def _text(field: str, value: str, *, required: bool = False, limit: int = TEXT_MAX) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationError({field: f"The {field} must not be empty."})
    if len(value) > limit:
        raise ValidationError({field: f"The {field} is {len(value)} characters; at most {limit}."})
    return value


def _assignees(users: Iterable[User]) -> list[User]:
    users = list(users)
    refused = [u.get_username() for u in users if not user_may(u, "work_case")]
    if refused:
        raise ValidationError(
            {"assignees": f"Only reviewers and admins work cases: {', '.join(refused)} cannot."}
        )
    return users


def _severity(value: str) -> str:
    if value not in Severity.values:
        raise ValidationError(
            {"severity": f"Unknown severity {value!r}; one of {', '.join(Severity.values)}."}
        )
    return value


def _snapshot(case: AuditCase) -> dict[str, Any]:
    return {
        "title": case.title,
        "description": case.description,
        "severity": case.severity,
        "summary": case.summary,
        "assignees": sorted(case.assignees.values_list("username", flat=True)),
    }


def case_open(
    *,
    user: User,
    title: str,
    profile: RetentionProfile,
    description: str = "",
    severity: str = Severity.MEDIUM,
    assignees: Iterable[User] = (),
    summary: str = "",
    request: Actor = None,
) -> AuditCase:
    """Open a case (state ``open``) with ``user`` as its opener."""
    title = _text("title", title, required=True, limit=TITLE_MAX)
    people = _assignees(assignees)
    with transaction.atomic():
        case = AuditCase.objects.create(
            title=title,
            description=_text("description", description),
            severity=_severity(severity),
            profile=profile,
            summary=_text("summary", summary),
            opened_by=user,
        )
        case.assignees.set(people)
        _audit("case.open", case, request, user, after=_snapshot(case) | {"profile": profile.code})
    return case


def case_update(
    *,
    case: AuditCase,
    user: User,
    request: Actor = None,
    assignees: Iterable[User] | None = None,
    **fields: str,
) -> AuditCase:
    """Change the title, description, severity, summary or assignees of a case that is not
    read-only. Only the fields given change; the audit event holds them before and after."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise ValidationError({"detail": f"Cannot change {', '.join(sorted(unknown))}."})
    with transaction.atomic():
        case = _locked(case)
        _writable(case, "change it")
        before = _snapshot(case)
        for field, value in fields.items():
            if field == "severity":
                case.severity = _severity(value)
            elif field == "title":
                case.title = _text("title", value, required=True, limit=TITLE_MAX)
            else:
                setattr(case, field, _text(field, value))
        if case.state == S.AWAITING_SIGN_OFF and not case.summary:
            raise ValidationError(
                {"summary": "A case awaiting sign-off keeps its executive summary."}
            )
        case.save()
        if assignees is not None:
            case.assignees.set(_assignees(assignees))
        after = _snapshot(case)
        changed = [k for k in after if after[k] != before[k]]
        if changed:
            _audit(
                "case.update",
                case,
                request,
                user,
                before={k: before[k] for k in changed},
                after={k: after[k] for k in changed},
            )
    return case


def transition_refusal(case: AuditCase, to: str) -> str | None:
    """Why ``case`` cannot move to state ``to`` now, or None when it can (a closing reason and
    the summary are checked by ``case_transition``)."""
    here, there = _name(case.state), _name(to)
    if to not in S.values:
        return f"{to!r} is not a case state; one of {', '.join(S.values)}."
    if to in TRANSITIONS[case.state]:
        return None
    prefix = f"Cannot go from {here} to {there}"
    if case.state == to:
        return f"{prefix}: the case is already {here}."
    if case.read_only:
        return f"{prefix}: the case is {here} and read-only."
    if to == S.SIGNED_OFF:
        return f"{prefix}: a case is signed off by its sign-offs."
    if to == S.OPEN:
        return f"{prefix}: a case never goes back to open."
    return f"{prefix}: it goes through in review first."  # open -> awaiting sign-off


def case_next_states(case: AuditCase) -> list[str]:
    """The states ``case`` may move to now by ``case_transition``."""
    return [state for state in S.values if state in TRANSITIONS[case.state]]


def case_transition(
    *, case: AuditCase, user: User, to: str, reason: str = "", request: Actor = None
) -> AuditCase:
    """Move ``case`` to state ``to``. See the module docstring for the transitions; closing
    needs a reason and sets ``closed_at`` and ``hold_until``; awaiting sign-off needs the
    executive summary; going back to in review withdraws the sign-offs given so far."""
    with transaction.atomic():
        case = _locked(case)
        refusal = transition_refusal(case, to)
        if refusal:
            raise CaseRefused(refusal)
        reason = _text("reason", reason)
        if to == S.CLOSED and not reason:
            raise ValidationError({"reason": "Closing a case without sign-off needs a reason."})
        if to == S.AWAITING_SIGN_OFF and not case.summary.strip():
            raise CaseRefused(
                f"Cannot go from {_name(case.state)} to {_name(to)}: "
                "write the executive summary first."
            )
        before = case.state
        detail: dict[str, Any] = {"reason": reason} if reason else {}
        if before == S.AWAITING_SIGN_OFF and to == S.IN_REVIEW:
            withdrawn = list(case.sign_offs.values_list("signer__username", flat=True))
            if withdrawn:
                case.sign_offs.all().delete()
                detail["withdrawn_sign_offs"] = withdrawn
        now = timezone.now()
        case.state = to
        if to == S.CLOSED:
            case.closed_at = now
            case.close_reason = reason
            case.hold_until = now + timedelta(days=case.profile.audit_extension_days)
        case.save()
        _audit(
            "case.transition",
            case,
            request,
            user,
            before={"state": before},
            after={"state": to},
            detail=detail,
        )
    return case


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
    from traces.services.runs import stored_file

    try:
        return stored_file(name)[0]
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
    manifest_name = f"{run.artifact_prefix}/manifest.json"
    try:
        with default_storage.open(manifest_name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ValidationError(
            {"trace": f"Run {run.pk} has no stored manifest ({manifest_name}): it is still "
             "running, or its bundle was purged; its traces cannot be cited yet."}
        ) from exc  # fmt: skip
    manifest_sha = hashlib.sha256(data).hexdigest()
    if run.manifest_sha256 and manifest_sha != run.manifest_sha256:
        raise ValidationError(
            {"trace": f"The manifest of run {run.pk} changed since the run finished "
             f"(sha256 {manifest_sha}, recorded {run.manifest_sha256})."}
        )  # fmt: skip
    try:
        chunks = {c["index"]: c for c in json.loads(data)["chunks"]}
        recorded = {part: chunks[trace.chunk]["files"][part]["sha256"] for part in CHUNK_PARTS}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError(
            {"trace": f"The manifest of run {run.pk} does not record chunk {trace.chunk}."}
        ) from exc
    pins = {manifest_name: manifest_sha}
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
    from traces import trace_tokens

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
    user: User,
    trace: Trace,
    token_start: int,
    token_end: int,
    features: Iterable[int] = (),
    note: str = "",
    added_from: str = "case",
    request: Actor = None,
) -> Evidence:
    """Cite tokens ``[token_start, token_end)`` of ``trace`` (positions as in the trace view,
    BOS at 0) and the features that matter there, with a note. Pins the sha256 of the run's
    manifest, the trace's chunk files and the range's text (see ``evidence_pins``)."""
    _writable(AuditCase.objects.get(pk=case.pk), "add evidence")  # before the slow checks
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
    note = _text("note", note)
    if added_from not in ("case", "trace", "triage", "api"):
        raise ValueError(f"unknown evidence origin {added_from!r}")
    pins = evidence_pins(trace)
    text = _range_text(trace, token_start, token_end)
    pins["token text"] = hashlib.sha256(text.encode()).hexdigest()
    with transaction.atomic():
        case = _locked(case)
        _writable(case, "add evidence")
        evidence = Evidence.objects.create(
            case=case,
            trace=trace,
            token_start=token_start,
            token_end=token_end,
            features=chosen,
            note=note,
            added_by=user,
            added_from=added_from,
            pins=pins,
            token_text=text,
        )
        AuditCase.objects.filter(pk=case.pk).update(updated_at=timezone.now())
        _audit(
            "case.evidence_add",
            case,
            request,
            user,
            after={
                "evidence": evidence.pk,
                "trace": trace.pk,
                "tokens": [token_start, token_end],
                "features": chosen,
            },
            detail={"pins": pins, "from": added_from},
        )
    return evidence


def evidence_remove(
    *, case: AuditCase, user: User, evidence: Evidence, request: Actor = None
) -> None:
    """Take a piece of evidence off a case that is not read-only."""
    if evidence.case_id != case.pk:
        raise ValidationError({"evidence": f"Evidence {evidence.pk} is not on case {case.pk}."})
    with transaction.atomic():
        case = _locked(case)
        _writable(case, "remove evidence")
        before = {
            "evidence": evidence.pk,
            "trace": evidence.trace_id,
            "tokens": [evidence.token_start, evidence.token_end],
            "features": evidence.features,
            "pins": evidence.pins,
        }
        evidence.delete()
        AuditCase.objects.filter(pk=case.pk).update(updated_at=timezone.now())
        _audit("case.evidence_remove", case, request, user, before=before)


def comment_add(*, case: AuditCase, user: User, body: str, request: Actor = None) -> CaseComment:
    """Comment on a case that is not read-only."""
    body = _text("body", body, required=True)
    with transaction.atomic():
        case = _locked(case)
        _writable(case, "comment on it")
        comment = CaseComment.objects.create(case=case, author=user, body=body)
        _audit("case.comment", case, request, user, after={"comment": comment.pk, "body": body})
    return comment


def counted_signers(case: AuditCase) -> list[int]:
    """Ids of the signers that count toward the profile's requirement: under four-eyes, never
    the case's opener."""
    signers = list(case.sign_offs.values_list("signer_id", flat=True))
    if case.profile.four_eyes:
        signers = [s for s in signers if s != case.opened_by_id]
    return signers


def case_sign_off(
    *, case: AuditCase, signer: User, statement: str, request: Actor = None
) -> SignOff:
    """``signer`` signs ``case`` off with a statement.

    Only reviewers and admins (``sign_off_case``) sign, each at most once, and only while the
    case awaits sign-off. Under a four-eyes profile the opener is refused. When the number of
    distinct counted signers reaches ``profile.signoffs_required`` the case becomes
    ``signed_off`` (read-only from then on), its cited traces are held for the profile's audit
    extension, and its report is queued once the transaction commits.
    """
    statement = _text("statement", statement, required=True)
    with transaction.atomic():
        case = _locked(case)
        _writable(case, "sign it off")
        if case.state != S.AWAITING_SIGN_OFF:
            raise CaseRefused(
                f"Cannot sign off a case that is {_name(case.state)}: "
                f"it must be {_name(S.AWAITING_SIGN_OFF)}."
            )
        if not user_may(signer, "sign_off_case"):
            raise CaseRefused(f"{signer.get_username()} may not sign cases off.")
        if case.sign_offs.filter(signer=signer).exists():
            raise CaseRefused(
                f"{signer.get_username()} has already signed case {case.pk} off; "
                "a case needs distinct signers."
            )
        if case.profile.four_eyes and signer.pk == case.opened_by_id:
            raise CaseRefused(
                f"Profile {case.profile.code} has four-eyes sign-off: the case's opener "
                f"({signer.get_username()}) cannot sign it off; another reviewer must."
            )
        sign_off = SignOff.objects.create(case=case, signer=signer, statement=statement)
        counted = counted_signers(case)
        required = case.profile.signoffs_required
        done = len(counted) >= required
        detail = {"statement": statement, "counted": len(counted), "required": required}
        _audit(
            "case.sign_off", case, request, signer, after={"signer": signer.username}, detail=detail
        )
        if done:
            now = timezone.now()
            case.state = S.SIGNED_OFF
            case.signed_off_at = now
            case.hold_until = now + timedelta(days=case.profile.audit_extension_days)
            case.save()
            _audit(
                "case.transition",
                case,
                request,
                signer,
                before={"state": S.AWAITING_SIGN_OFF},
                after={"state": S.SIGNED_OFF},
                detail={"signers": len(counted), "hold_until": case.hold_until},
            )
            signed = case
            # robust: the sign-off is committed; a report that fails to queue is logged and can
            # be queued again from the case page, never turned into an error for the signer.
            transaction.on_commit(lambda: _queue_report(signed, signer), robust=True)
    return sign_off


def _queue_report(case: AuditCase, signer: User) -> None:
    # Imported here: the report module belongs to the report area and loads its own helpers.
    from reports.services_reports import report_queue

    report_queue(case=case, user=signer)


def case_viewed(*, case: AuditCase, request: Actor, user: User | None = None) -> None:
    """Record that someone read the case (page or API)."""
    _audit("case.view", case, request, user)


def case_open_from_triage(
    *, trace: Trace, user: User, note: str = "", severity: str = Severity.MEDIUM,
    request: Actor = None,
) -> AuditCase:  # fmt: skip
    """The triage queue's "open a case": a case under the trace's profile with the trace (its
    tokens after BOS) and its tripped features as evidence, and the trace marked reviewed in
    the queue, all or nothing. Raises ``TriageRefused`` when the trace is not in the queue."""
    from traces.selectors_triage import tripped_features
    from traces.services.triage import triage_decide

    tripped = tripped_features([trace]).get(trace.pk, [])
    top = tripped[0] if tripped else None
    what = (
        f"feature {top.feature}" + (f" ({top.label})" if top and top.label else "") if top else ""
    )
    title = f"Trace {trace.pk} of run {trace.run_id}" + (f": {what}" if what else "")
    with transaction.atomic():
        case = case_open(
            user=user,
            title=title,
            profile=trace.run.profile,
            severity=severity,
            description=f"Opened from the triage queue. {note}".strip(),
            request=request,
        )
        evidence_add(
            case=case,
            user=user,
            trace=trace,
            token_start=1 if trace.tokens > 1 else 0,
            token_end=min(trace.tokens, EVIDENCE_TOKENS_MAX + 1),
            features=[t.feature for t in tripped],
            note=note,
            added_from="triage",
            request=request,
        )
        triage_decide(
            trace=trace,
            user=user,
            decision="reviewed",
            note=f"Opened case {case.pk}. {note}".strip(),
        )
    return case
