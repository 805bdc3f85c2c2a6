"""Re-applying a profile's retention to items already made under it.

Editing a profile never moves existing expiries. An admin may ask to re-apply: each prompt
set, run and export of the profile then expires at its creation plus the profile's current
retention. The confirmation page shows ``reapply_preview`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from governance.models import Export
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.retention.models import RetentionProfile
from traces.models import AnalysisRun, PromptSet

# kind -> (model, the field that says when it was made)
_KINDS: dict[str, tuple[type[Any], str]] = {
    "prompt_sets": (PromptSet, "created_at"),
    "runs": (AnalysisRun, "created_at"),
    "exports": (Export, "requested_at"),
}


@dataclass
class ReapplyPreview:
    retention_days: int
    moves: dict[str, int]  # kind -> items whose expiry would change
    now_expired: dict[str, int]  # kind -> of those, items already past their new expiry

    @property
    def total(self) -> int:
        return sum(self.moves.values())


def _moving(profile: RetentionProfile, kind: str) -> tuple[QuerySet[Any], Any]:
    model, made = _KINDS[kind]
    new_expiry = F(made) + timedelta(days=profile.retention_days)
    return model.objects.filter(profile=profile).exclude(expires_at=new_expiry), new_expiry


def reapply_preview(profile: RetentionProfile) -> ReapplyPreview:
    """How many items re-applying would move, and how many would be expired at once."""
    now = timezone.now()
    cutoff = now - timedelta(days=profile.retention_days)
    moves, expired = {}, {}
    for kind, (_model, made) in _KINDS.items():
        queryset, _ = _moving(profile, kind)
        moves[kind] = queryset.count()
        expired[kind] = queryset.filter(**{f"{made}__lte": cutoff}).count()
    return ReapplyPreview(profile.retention_days, moves, expired)


def retention_reapply(*, profile: RetentionProfile, actor: Actor) -> ReapplyPreview:
    """Recompute the expiry of every item of ``profile`` from its creation and the profile's
    retention now; audited "retention.reapply" with the counts moved."""
    with transaction.atomic():
        profile = RetentionProfile.objects.select_for_update().get(pk=profile.pk)
        preview = reapply_preview(profile)
        for kind in _KINDS:
            queryset, new_expiry = _moving(profile, kind)
            queryset.update(expires_at=new_expiry)
        audit_record(
            "retention.reapply",
            actor=actor,
            obj=profile,
            object_id=profile.code,
            detail={
                "retention_days": profile.retention_days,
                "moved": preview.moves,
                "expired_at_once": preview.now_expired,
            },
        )
    return preview
