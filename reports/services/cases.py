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

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from reports.models import AuditCase, CaseComment, CaseState, Severity
from scopeweb.accounts.access import user_may
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.refusals import Refused
from scopeweb.retention.models import RetentionProfile

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


class CaseRefused(Refused):
    """The case's state or the sign-off rules refuse the action; the message says why."""


def state_name(state: str) -> str:
    return STATE_NAMES.get(state, state)


def refuse_if_read_only(case: AuditCase, doing: str) -> None:
    if case.read_only:
        raise CaseRefused(
            f"Case {case.pk} is {state_name(case.state)} and read-only: cannot {doing}."
        )


def case_locked(case: AuditCase) -> AuditCase:
    """The case's row, locked for this transaction, so two edits never race past a check."""
    return AuditCase.objects.select_for_update().select_related("profile").get(pk=case.pk)


def clean_text(field: str, value: str, *, required: bool = False, limit: int = TEXT_MAX) -> str:
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
    actor: Actor,
    title: str,
    profile: RetentionProfile,
    description: str = "",
    severity: str = Severity.MEDIUM,
    assignees: Iterable[User] = (),
    summary: str = "",
) -> AuditCase:
    """Open a case (state ``open``) with the actor as its opener."""
    title = clean_text("title", title, required=True, limit=TITLE_MAX)
    people = _assignees(assignees)
    with transaction.atomic():
        case = AuditCase.objects.create(
            title=title,
            description=clean_text("description", description),
            severity=_severity(severity),
            profile=profile,
            summary=clean_text("summary", summary),
            opened_by=actor.person,
        )
        case.assignees.set(people)
        audit_record(
            "case.open", actor=actor, obj=case, after=_snapshot(case) | {"profile": profile.code}
        )
    return case


def case_update(
    *,
    case: AuditCase,
    actor: Actor,
    assignees: Iterable[User] | None = None,
    **fields: str,
) -> AuditCase:
    """Change the title, description, severity, summary or assignees of a case that is not
    read-only. Only the fields given change; the audit event holds them before and after."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise ValidationError({"detail": f"Cannot change {', '.join(sorted(unknown))}."})
    with transaction.atomic():
        case = case_locked(case)
        refuse_if_read_only(case, "change it")
        before = _snapshot(case)
        for field, value in fields.items():
            if field == "severity":
                case.severity = _severity(value)
            elif field == "title":
                case.title = clean_text("title", value, required=True, limit=TITLE_MAX)
            else:
                setattr(case, field, clean_text(field, value))
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
            audit_record(
                "case.update",
                actor=actor,
                obj=case,
                before={k: before[k] for k in changed},
                after={k: after[k] for k in changed},
            )
    return case


def transition_refusal(case: AuditCase, to: str) -> str | None:
    """Why ``case`` cannot move to state ``to`` now, or None when it can (a closing reason and
    the summary are checked by ``case_transition``)."""
    here, there = state_name(case.state), state_name(to)
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


def case_transition(*, case: AuditCase, actor: Actor, to: str, reason: str = "") -> AuditCase:
    """Move ``case`` to state ``to``. See the module docstring for the transitions; closing
    needs a reason and sets ``closed_at`` and ``hold_until``; awaiting sign-off needs the
    executive summary; going back to in review withdraws the sign-offs given so far."""
    with transaction.atomic():
        case = case_locked(case)
        refusal = transition_refusal(case, to)
        if refusal:
            raise CaseRefused(refusal)
        reason = clean_text("reason", reason)
        if to == S.CLOSED and not reason:
            raise ValidationError({"reason": "Closing a case without sign-off needs a reason."})
        if to == S.AWAITING_SIGN_OFF and not case.summary.strip():
            raise CaseRefused(
                f"Cannot go from {state_name(case.state)} to {state_name(to)}: "
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
        audit_record(
            "case.transition",
            actor=actor,
            obj=case,
            before={"state": before},
            after={"state": to},
            detail=detail,
        )
    return case


def comment_add(*, case: AuditCase, actor: Actor, body: str) -> CaseComment:
    """Comment on a case that is not read-only."""
    body = clean_text("body", body, required=True)
    with transaction.atomic():
        case = case_locked(case)
        refuse_if_read_only(case, "comment on it")
        comment = CaseComment.objects.create(case=case, author=actor.person, body=body)
        audit_record(
            "case.comment", actor=actor, obj=case, after={"comment": comment.pk, "body": body}
        )
    return comment


def case_viewed(*, case: AuditCase, actor: Actor) -> None:
    """Record that someone read the case (page or API)."""
    audit_record("case.view", actor=actor, obj=case)
