"""Recording audit events: ``audit_record`` is the only writer of ``AuditEvent``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.chain import GENESIS, HASHED_FIELDS, ChainReport, chain_verify, event_digest
from scopeweb.audit.models import AuditEvent

VERIFY_BATCH = 2000
# Any constant works: it names the advisory lock that serialises appends on PostgreSQL.
_CHAIN_LOCK = 0x5C0BE_A0D17


def _plain(value: Any) -> Any:
    """The value as the JSON column will give it back (dates as strings, tuples as lists)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_record(
    action: str,
    *,
    actor: Actor,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: object = "",
    object_repr: str = "",
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain.

    Who: ``actor`` (user, channel and address). What: ``action`` ("case.sign_off",
    "auth.login_failed", …). Which object: ``obj`` (a model instance) or
    ``object_type``/``object_id``/``object_repr``. Runs in its own atomic block; when the
    caller's transaction rolls back, so does the event.
    """
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    user = actor.user
    fields: dict[str, Any] = {
        "at": timezone.now(),
        "actor_id": user.pk if user is not None else None,
        "actor": actor.username,
        "via": actor.via or ("web" if user is not None else "system"),
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id if object_id is not None else ""),
        "object_repr": object_repr[:300],
        "source": actor.source,
        "before": _plain(before),
        "after": _plain(after),
        "detail": _plain(detail or {}),
    }
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev = last or GENESIS
        # Microseconds are what both databases keep; the hash must see what is stored.
        return AuditEvent.objects.create(**fields, prev_hash=prev, hash=event_digest(fields, prev))


def audit_chain_check(*, batch_size: int = VERIFY_BATCH) -> ChainReport:
    """Walk the whole chain in id order, ``batch_size`` rows at a time, and report the first
    broken link (``ChainReport.broken_id``) or how many events hold."""
    events = (
        AuditEvent.objects.order_by("id")
        .only("id", "prev_hash", "hash", *HASHED_FIELDS)
        .iterator(chunk_size=batch_size)
    )
    return chain_verify(events)


@dataclass(frozen=True)
class ChainHead:
    """The newest event of the chain: quoted somewhere outside the log (a signed report), it
    lets a later check see that the log was not cut back or rewritten from that point."""

    event_id: int
    sha256: str
    at: datetime

    @property
    def anchor(self) -> str:
        """What ``verify_audit_log --anchor`` takes."""
        return f"{self.event_id}:{self.sha256}"


def audit_head() -> ChainHead | None:
    newest = AuditEvent.objects.order_by("-id").only("id", "hash", "at").first()
    return None if newest is None else ChainHead(newest.pk, newest.hash, newest.at)


def anchor_problem(anchor: str) -> str:
    """Why the log does not hold ``anchor`` ("ID:SHA256", as ``ChainHead.anchor``), or ""."""
    event_id, _, sha256 = anchor.partition(":")
    if not event_id.isdigit() or len(sha256) != 64:
        return f"{anchor!r} is not an anchor (event id, a colon, its 64-hex-digit sha256)"
    event = AuditEvent.objects.filter(pk=int(event_id)).only("hash").first()
    if event is None:
        return f"event {event_id} is missing: the log was cut back before it"
    if event.hash != sha256.lower():
        return f"event {event_id} has another hash: the log was rewritten from there or before"
    return ""
