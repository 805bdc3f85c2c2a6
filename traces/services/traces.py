"""Traces as reviewers read them: each view of a trace's tokens is an audit event."""

from __future__ import annotations

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from traces.models import Trace


def trace_viewed(*, trace: Trace, actor: Actor) -> None:
    """Record that someone read the trace's tokens (page or API)."""
    audit_record("trace.view", actor=actor, obj=trace)
