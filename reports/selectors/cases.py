"""Reading audit cases: who sees which cases, the filtered list, one case with its evidence,
and its history (the audit events whose object is the case)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from reports.models import AuditCase, CaseState, Evidence
from scopeweb.accounts.access import user_may
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.selectors import audit_events_shown
from scopeweb.redaction import redact_text
from traces.models import FeatureAnnotation


def cases_visible_to(user: Any) -> QuerySet[AuditCase]:
    """Those who work cases see every case; auditors (``read_signed_case`` alone) see signed-off
    cases only; anyone else none."""
    cases = AuditCase.objects.select_related("profile", "opened_by")
    if user_may(user, "work_case"):
        return cases
    if user_may(user, "read_signed_case"):
        return cases.filter(state=CaseState.SIGNED_OFF)
    return cases.none()


def case_list(
    user: Any, *, state: str = "", severity: str = "", profile: str = ""
) -> QuerySet[AuditCase]:
    cases = cases_visible_to(user)
    if state:
        cases = cases.filter(state=state)
    if severity:
        cases = cases.filter(severity=severity)
    if profile:
        # No code holds NUL, and PostgreSQL refuses to compare text with one (a 500 otherwise).
        cases = cases.filter(profile__code=profile) if "\x00" not in profile else cases.none()
    return cases


def case_get(user: Any, case_id: int) -> AuditCase:
    """The case, or 404 when it does not exist or ``user`` may not see it (an auditor asking
    for a case that is not signed off learns nothing about it)."""
    case = cases_visible_to(user).filter(pk=case_id).first()
    if case is None:
        raise Http404(f"No case {case_id} that you may read.")
    return case


def case_history(case: AuditCase) -> list[AuditEvent]:
    """The case's audit events, oldest first, each with its ``changes`` for the table."""
    return audit_events_shown(
        AuditEvent.objects.filter(object_type="auditcase", object_id=str(case.pk)).order_by("id")
    )


@dataclass
class EvidenceView:
    evidence: Evidence
    text: str
    redacted: bool
    features: list[tuple[int, str]] = field(default_factory=list)  # (index, label)


def case_evidence(case: AuditCase, *, redact: bool) -> list[EvidenceView]:
    """The case's evidence with each feature's label; with ``redact`` (auditors) the token
    text and the note as the case's profile redacts them."""
    items = list(
        case.evidence.select_related("trace__run__sae", "trace__prompt", "added_by").order_by("id")
    )
    labels: dict[tuple[int, int], str] = {}
    wanted = {(e.trace.run.sae_id, f) for e in items for f in e.features}
    if wanted:
        rows = FeatureAnnotation.objects.filter(
            sae_id__in={s for s, _ in wanted}, index__in={f for _, f in wanted}
        ).values_list("sae_id", "index", "label")
        labels = {(s, i): label for s, i, label in rows}
    found = []
    for item in items:
        text = item.token_text
        if redact:
            text = redact_text(text, case.profile).text
            item.note = redact_text(item.note, case.profile).text
        sae_id = item.trace.run.sae_id
        found.append(
            EvidenceView(
                evidence=item,
                text=text,
                redacted=redact,
                features=[(f, labels.get((sae_id, f), "")) for f in item.features],
            )
        )
    return found


def open_cases_for_evidence(user: Any) -> QuerySet[AuditCase]:
    """Cases ``user`` may add evidence to: every case that is not read-only, newest first."""
    if not user_may(user, "work_case"):
        return AuditCase.objects.none()
    return AuditCase.objects.exclude(state__in=[CaseState.SIGNED_OFF, CaseState.CLOSED])
