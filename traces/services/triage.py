"""Decisions on traces in the triage queue."""

from __future__ import annotations

from django.db import transaction

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.refusals import Refused
from traces.models import Trace, TriageReview
from traces.selectors.triage import triage_reviewed, tripped_features


class TriageRefused(Refused):
    """The decision cannot be taken: the trace is not (or no longer) in the triage queue."""


@transaction.atomic
def triage_decide(*, trace: Trace, actor: Actor, decision: str, note: str = "") -> TriageReview:
    """Record the actor's ``decision`` on ``trace``: ``reviewed`` takes it out of the queue for
    everyone, ``skipped`` sends it to the back of the actor's queue. Raises ``TriageRefused``
    when the trace trips no watched feature or was already marked reviewed."""
    if decision not in TriageReview.Decision.values:
        raise ValueError(f"unknown decision {decision!r}")
    if not tripped_features([trace]).get(trace.pk):
        raise TriageRefused(f"Trace {trace.pk} trips no watched feature: it is not in the queue.")
    done = triage_reviewed(trace)
    if done is not None:
        who = done.reviewer.get_username() if done.reviewer else "a deleted user"
        raise TriageRefused(
            f"Trace {trace.pk} was already marked reviewed by {who} "
            f"at {done.decided_at:%Y-%m-%d %H:%M} UTC."
        )
    review = TriageReview.objects.create(
        trace=trace, reviewer=actor.person, decision=decision, note=note
    )
    audit_record(
        "triage.decide",
        actor=actor,
        obj=trace,
        after={"decision": decision, "note": note},
    )
    return review
