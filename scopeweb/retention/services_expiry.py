"""When an item expires: its profile's retention counted from when it was made.

Prompt sets get their expiry at import, runs (and so their traces and trace bundle) when they
start, exports when they are requested. A changed profile moves existing expiries only when an
admin re-applies it (``scopeweb.retention.services_reapply``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from scopeweb.retention.models import RetentionProfile


def expiry_for(profile: RetentionProfile, now: datetime | None = None) -> datetime:
    """The expiry of an item made under ``profile`` at ``now`` (default: the present)."""
    return (now or timezone.now()) + timedelta(days=profile.retention_days)
