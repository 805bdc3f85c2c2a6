"""Reading the audit log: the filtered list, newest first."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from scopeweb.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit log; empty ones are left out.

    ``action`` matches the action itself or, given a prefix such as ``run``, every ``run.*``.
    """

    actor: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    time_from: datetime | None = None
    time_to: datetime | None = None

    def as_params(self) -> dict[str, Any]:
        """The filters in effect, for the record of an export."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in self.__dict__.items()
            if value not in ("", None)
        }


def audit_event_list(query: AuditQuery) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if query.actor:
        events = events.filter(actor=query.actor)
    if query.action:
        action = query.action.rstrip(".")
        events = events.filter(Q(action=action) | Q(action__startswith=f"{action}."))
    if query.object_type:
        events = events.filter(object_type=query.object_type)
    if query.object_id:
        events = events.filter(object_id=query.object_id)
    if query.time_from is not None:
        events = events.filter(at__gte=query.time_from)
    if query.time_to is not None:
        events = events.filter(at__lt=query.time_to)
    return events.order_by("-id")


def audit_changes(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """What changed, field by field, when both sides are objects; else one ("", before, after)
    row. Fields equal on both sides are left out."""
    if isinstance(before, dict) and isinstance(after, dict):
        names = list(dict.fromkeys([*before, *after]))
        return [
            (name, before.get(name), after.get(name))
            for name in names
            if before.get(name) != after.get(name)
        ]
    if before is None and after is None:
        return []
    return [("", before, after)]


def _short(value: Any, limit: int = 120) -> str:
    """A value as compact JSON, cut at ``limit`` characters, for a table cell."""
    text = "—" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_events_shown(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """The events, each with ``changes``: (field, before, after) as short JSON for a table."""
    shown = list(events)
    for event in shown:
        event.changes = [  # type: ignore[attr-defined]
            (name, _short(old), _short(new))
            for name, old, new in audit_changes(event.before, event.after)
        ]
    return shown
