"""The triage queue's "open a case": a case with the trace as evidence, and the trace marked
reviewed, all or nothing."""

from __future__ import annotations

from django.db import transaction

from reports.models import AuditCase, Severity
from reports.services.cases import case_open
from reports.services.evidence import EVIDENCE_TOKENS_MAX, evidence_add
from scopeweb.accounts.actor import Actor
from traces.models import Trace
from traces.selectors.triage import tripped_features
from traces.services.triage import triage_decide


def case_open_from_triage(
    *, trace: Trace, actor: Actor, note: str = "", severity: str = Severity.MEDIUM,
) -> AuditCase:  # fmt: skip
    """The triage queue's "open a case": a case under the trace's profile with the trace (its
    tokens after BOS) and its tripped features as evidence, and the trace marked reviewed in
    the queue, all or nothing. Raises ``TriageRefused`` when the trace is not in the queue."""
    tripped = tripped_features([trace]).get(trace.pk, [])
    top = tripped[0] if tripped else None
    what = (
        f"feature {top.feature}" + (f" ({top.label})" if top and top.label else "") if top else ""
    )
    title = f"Trace {trace.pk} of run {trace.run_id}" + (f": {what}" if what else "")
    with transaction.atomic():
        case = case_open(
            actor=actor,
            title=title,
            profile=trace.run.profile,
            severity=severity,
            description=f"Opened from the triage queue. {note}".strip(),
        )
        evidence_add(
            case=case,
            actor=actor,
            trace=trace,
            token_start=1 if trace.tokens > 1 else 0,
            token_end=min(trace.tokens, EVIDENCE_TOKENS_MAX + 1),
            features=[t.feature for t in tripped],
            note=note,
            added_from="triage",
        )
        triage_decide(
            trace=trace,
            actor=actor,
            decision="reviewed",
            note=f"Opened case {case.pk}. {note}".strip(),
        )
    return case
