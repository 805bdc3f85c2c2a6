"""Retention profile edits, each recorded with its before and after."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from scopeweb.audit.services import audit_record
from scopeweb.retention.models import EDITABLE_FIELDS, RetentionProfile, RetentionProfileChange


def profile_snapshot(profile: RetentionProfile) -> dict[str, Any]:
    return {field: getattr(profile, field) for field in EDITABLE_FIELDS}


@transaction.atomic
def retention_profile_update(
    *,
    profile: RetentionProfile,
    changed_by: User,
    values: dict[str, Any],
    request: Any = None,
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
        changed_by=changed_by,
        before={field: before[field] for field in changed},
        after={field: after[field] for field in changed},
    )
    audit_record(
        "retention.update",
        request=request,
        user=changed_by,
        via="command",
        obj=profile,
        object_id=profile.code,
        before=change.before,
        after=change.after,
    )
    return change
