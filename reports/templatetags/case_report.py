"""``{% case_report_state case as state %}``: the case's signed report and its newest job, for
the case page's report panel (``templates/reports/_case_report.html``)."""

from __future__ import annotations

from typing import Any

from django import template

from reports.models import AuditCase, CaseReport
from reports.services.reports import report_job

register = template.Library()


@register.simple_tag
def case_report_state(case: AuditCase) -> dict[str, Any]:
    report = CaseReport.objects.filter(case=case).first()
    return {"report": report, "job": report_job(case) if report is None else report.job}
