from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from reports.models import AuditCase, Severity
from reports.services.cases import Actor, case_open
from reports.services.evidence import EVIDENCE_TOKENS_MAX, evidence_add
from traces.models import Trace


def case_open_from_triage(
    *, trace: Trace, user: User, note: str = "", severity: str = Severity.MEDIUM,
    request: Actor = None,
) -> AuditCase:  # fmt: skip
    """The triage queue's "open a case": a case under the trace's profile with the trace (its
    tokens after BOS) and its tripped features as evidence, and the trace marked reviewed in
    the queue, all or nothing. Raises ``TriageRefused`` when the trace is not in the queue."""
    from traces.selectors.triage import tripped_features
    from traces.services.triage import triage_decide

    tripped = tripped_features([trace]).get(trace.pk, [])
    top = tripped[0] if tripped else None
    what = (
        f"feature {top.feature}" + (f" ({top.label})" if top and top.label else "") if top else ""
    )
    title = f"Trace {trace.pk} of run {trace.run_id}" + (f": {what}" if what else "")
    with transaction.atomic():
        case = case_open(
            user=user,
            title=title,
            profile=trace.run.profile,
            severity=severity,
            description=f"Opened from the triage queue. {note}".strip(),
            request=request,
        )
        evidence_add(
            case=case,
            user=user,
            trace=trace,
            token_start=1 if trace.tokens > 1 else 0,
            token_end=min(trace.tokens, EVIDENCE_TOKENS_MAX + 1),
            features=[t.feature for t in tripped],
            note=note,
            added_from="triage",
            request=request,
        )
        triage_decide(
            trace=trace,
            user=user,
            decision="reviewed",
            note=f"Opened case {case.pk}. {note}".strip(),
        )
    return case
