"""The hash chain of the audit log: how one event's sha256 is taken, and how the chain is walked."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = (
    "at", "actor_id", "actor", "via", "action", "object_type", "object_id", "object_repr",
    "source", "before", "after", "detail",
)  # fmt: skip


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_digest(fields: dict[str, Any], prev_hash: str) -> str:
    """sha256 over the previous hash and the event's fields as canonical JSON."""
    body = {name: fields[name] for name in HASHED_FIELDS}
    body["at"] = _stamp(body["at"])
    body["prev_hash"] = prev_hash
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def chain_verify(events: Iterable[Any]) -> ChainReport:
    """Walk events in id order; name the first whose link or own hash does not hold."""
    prev = GENESIS
    checked = 0
    for event in events:
        if event.prev_hash != prev:
            return ChainReport(
                checked, event.id, "its prev_hash is not the hash of the event before"
            )
        fields = {name: getattr(event, name) for name in HASHED_FIELDS}
        if event_digest(fields, prev) != event.hash:
            return ChainReport(checked, event.id, "its fields no longer match its hash")
        prev = event.hash
        checked += 1
    return ChainReport(checked)
