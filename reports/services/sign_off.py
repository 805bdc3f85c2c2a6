"""Signing a case off: distinct signers up to the profile's number, never only the opener under
four-eyes; the last counted sign-off makes the case read-only and queues its signed report."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from reports.models import AuditCase, SignOff
from reports.services.cases import (
    CaseRefused,
    S,
    case_locked,
    clean_text,
    refuse_if_read_only,
    state_name,
)
from reports.services.reports import report_queue
from scopeweb.accounts.access import user_may
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record


def counted_signers(case: AuditCase) -> list[int]:
    """Ids of the signers that count toward the profile's requirement: under four-eyes, never
    the case's opener."""
    signers = list(case.sign_offs.values_list("signer_id", flat=True))
    if case.profile.four_eyes:
        signers = [s for s in signers if s != case.opened_by_id]
    return signers


def case_sign_off(*, case: AuditCase, actor: Actor, statement: str) -> SignOff:
    """The actor signs ``case`` off with a statement.

    Only reviewers and admins (``sign_off_case``) sign, each at most once, and only while the
    case awaits sign-off. Under a four-eyes profile the opener is refused. When the number of
    distinct counted signers reaches ``profile.signoffs_required`` the case becomes
    ``signed_off`` (read-only from then on), its cited traces are held for the profile's audit
    extension, and its report is queued once the transaction commits.
    """
    signer = actor.person
    statement = clean_text("statement", statement, required=True)
    with transaction.atomic():
        case = case_locked(case)
        refuse_if_read_only(case, "sign it off")
        if case.state != S.AWAITING_SIGN_OFF:
            raise CaseRefused(
                f"Cannot sign off a case that is {state_name(case.state)}: "
                f"it must be {state_name(S.AWAITING_SIGN_OFF)}."
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
        audit_record(
            "case.sign_off", actor=actor, obj=case, after={"signer": signer.username}, detail=detail
        )
        if done:
            now = timezone.now()
            case.state = S.SIGNED_OFF
            case.signed_off_at = now
            case.hold_until = now + timedelta(days=case.profile.audit_extension_days)
            case.save()
            audit_record(
                "case.transition",
                actor=actor,
                obj=case,
                before={"state": S.AWAITING_SIGN_OFF},
                after={"state": S.SIGNED_OFF},
                detail={"signers": len(counted), "hold_until": case.hold_until},
            )
            signed = case
            # robust: the sign-off is committed; a report that fails to queue is logged and can
            # be queued again from the case page, never turned into an error for the signer.
            transaction.on_commit(lambda: _queue_report(signed, actor), robust=True)
    return sign_off


def _queue_report(case: AuditCase, actor: Actor) -> None:
    # Imported here: the report module belongs to the report area and loads its own helpers.

    report_queue(case=case, actor=actor)
