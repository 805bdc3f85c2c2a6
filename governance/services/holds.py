"""Legal holds: an admin places one (with a reason) on a prompt set, run or case, and lifts it
(with a reason). While active it suspends expiry of everything under its target (see
``governance.selectors.expiry``). Both are audited.

States: active (``lifted_at`` empty) ──► lifted. A lifted hold is never re-activated; place a
new one.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.utils import timezone

from governance.models import HoldTarget, LegalHold
from reports.models import AuditCase
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.refusals import Refused
from traces.models import AnalysisRun, PromptSet

REASON_MAX = 2000
HOLD_MODELS: dict[str, type[models.Model]] = {
    HoldTarget.PROMPT_SET: PromptSet,
    HoldTarget.RUN: AnalysisRun,
    HoldTarget.CASE: AuditCase,
}


class HoldError(Refused):
    """A refused hold action; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, status=400, field=field)


def _reason(value: str, field: str) -> str:
    reason = (value or "").strip()
    if not reason:
        raise HoldError(field, "A reason is required.")
    if len(reason) > REASON_MAX:
        raise HoldError(
            field, f"The reason is {len(reason)} characters; the limit is {REASON_MAX}."
        )
    return reason


def _check_may(actor: Actor) -> None:
    if not actor.may("manage_holds"):
        raise PermissionDenied("Placing and lifting legal holds is for admins.")


def hold_target(target_type: str, target_id: int, *, lock: bool = False) -> models.Model:
    """The held object, or ``HoldError`` naming what is wrong."""
    model = HOLD_MODELS.get(target_type)
    if model is None:
        choices = ", ".join(HOLD_MODELS)
        raise HoldError("target_type", f"Unknown target type {target_type!r}; use {choices}.")
    manager = model._default_manager
    found = (manager.select_for_update() if lock else manager).filter(pk=target_id).first()
    if found is None:
        label = HoldTarget(target_type).label.lower()
        raise HoldError("target_id", f"There is no {label} with id {target_id}.")
    return found


def hold_place(*, actor: Actor, target_type: str, target_id: int, reason: str) -> LegalHold:
    """Place a hold; refused without a reason, for a missing target, or when an active hold
    already covers that very target."""
    _check_may(actor)
    reason = _reason(reason, "reason")
    with transaction.atomic():
        # The purge locks the same row before its last check: the two never interleave.
        target = hold_target(target_type, target_id, lock=True)
        existing = LegalHold.objects.filter(
            target_type=target_type, target_id=target_id, lifted_at__isnull=True
        ).first()
        if existing is not None:
            raise HoldError(
                "target_id", f"Hold {existing.pk} already holds {target}; lift it or keep it."
            )
        hold = LegalHold.objects.create(
            target_type=target_type,
            target_id=target_id,
            target_repr=str(target)[:300],
            reason=reason,
            placed_by=actor.person,
        )
        audit_record(
            "hold.place",
            actor=actor,
            obj=hold,
            detail={"target_type": target_type, "target_id": target_id, "reason": reason},
        )
    return hold


def hold_lift(*, actor: Actor, hold: LegalHold, reason: str) -> LegalHold:
    """Lift an active hold; what it held may expire at the next purge."""
    _check_may(actor)
    reason = _reason(reason, "lift_reason")
    with transaction.atomic():
        hold = LegalHold.objects.select_for_update().get(pk=hold.pk)
        if hold.lifted_at is not None:
            raise HoldError("lift_reason", f"Hold {hold.pk} was already lifted.")
        hold.lifted_at = timezone.now()
        hold.lifted_by = actor.person
        hold.lift_reason = reason
        hold.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
        audit_record(
            "hold.lift",
            actor=actor,
            obj=hold,
            detail={
                "target_type": hold.target_type,
                "target_id": hold.target_id,
                "reason": reason,
                "placed_at": hold.placed_at,
            },
        )
    return hold
