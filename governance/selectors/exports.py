"""Reading exports: requesters see their own, admins (``approve_export``) see every one."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from governance.models import Export, ExportState
from scopeweb.accounts.access import user_may


def exports_visible_to(user: Any) -> QuerySet[Export]:
    exports = Export.objects.select_related("profile", "requested_by", "decided_by", "job")
    if user_may(user, "approve_export"):
        return exports
    if user_may(user, "export_data"):
        return exports.filter(requested_by=user)
    return exports.none()


def export_list(user: Any, *, state: str = "") -> QuerySet[Export]:
    exports = exports_visible_to(user)
    if state in ExportState.values:
        exports = exports.filter(state=state)
    return exports


def export_get(user: Any, export_id: int) -> Export:
    """The export, or 404 when it does not exist or is someone else's (for a non-admin)."""
    export = exports_visible_to(user).filter(pk=export_id).first()
    if export is None:
        raise Http404(f"No export {export_id} that you may see.")
    return export


def awaiting_decision_by(user: Any) -> QuerySet[Export]:
    """Exports awaiting the GDPR review that ``user`` may decide: an admin's, not their own."""
    if not user_may(user, "approve_export"):
        return Export.objects.none()
    return (
        exports_visible_to(user)
        .filter(state=ExportState.AWAITING_APPROVAL)
        .exclude(requested_by=user)
    )
