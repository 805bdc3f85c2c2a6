"""Retention profiles: their edits, each recorded with its before and after, and the expiry
rule.

When an item expires: its profile's retention counted from when it was made. Prompt sets get
their expiry at import, runs (and so their traces and trace bundle) when they start, exports
when they are requested. A changed profile moves existing expiries only when an admin
re-applies it (``governance.services.reapply``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.retention.models import EDITABLE_FIELDS, RetentionProfile, RetentionProfileChange


def expiry_for(profile: RetentionProfile, now: datetime | None = None) -> datetime:
    """The expiry of an item made under ``profile`` at ``now`` (default: the present)."""
    return (now or timezone.now()) + timedelta(days=profile.retention_days)


def profile_snapshot(profile: RetentionProfile) -> dict[str, Any]:
    return {field: getattr(profile, field) for field in EDITABLE_FIELDS}


@transaction.atomic
def retention_profile_update(
    *,
    profile: RetentionProfile,
    actor: Actor,
    values: dict[str, Any],
) -> RetentionProfileChange | None:
    """Apply validated ``values``; returns the recorded change, or None when nothing changed.

    Values must already be validated (the form or serializer does that); this still runs the
    model's validators so no path can store a day count outside the tiers or a rate outside [0, 1].
    """
    unknown = set(values) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not editable: {', '.join(sorted(unknown))}")
    profile = RetentionProfile.objects.select_for_update().get(pk=profile.pk)
    before = profile_snapshot(profile)
    for field, value in values.items():
        setattr(profile, field, value)
    profile.full_clean()
    after = profile_snapshot(profile)
    changed = [field for field in EDITABLE_FIELDS if before[field] != after[field]]
    if not changed:
        return None
    profile.save(update_fields=changed)
    change = RetentionProfileChange.objects.create(
        profile=profile,
        changed_by=actor.person,
        before={field: before[field] for field in changed},
        after={field: after[field] for field in changed},
    )
    audit_record(
        "retention.update",
        actor=actor,
        obj=profile,
        object_id=profile.code,
        before=change.before,
        after=change.after,
    )
    return change
