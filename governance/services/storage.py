"""Storage cost alerts: logged each time the cost passes a threshold, audited once a day."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from governance.selectors.storage import StorageReport, storage_report
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import audit_record

log = logging.getLogger(__name__)
ALERT_ACTION = "storage.cost_alert"


def storage_cost_check(report: StorageReport | None = None) -> StorageReport:
    """Warn (log) when today's or the projected monthly cost passes the warning or alert
    threshold, and record an audit event "storage.cost_alert" at most once every 24 hours."""
    report = report or storage_report()
    if report.level == "ok":
        return report
    log.warning(
        "storage cost %s: %.2f a month now, %.2f projected (warning at %.2f, alert at %.2f)",
        report.level,
        report.monthly_cost,
        report.projected_monthly_cost,
        report.warn_monthly,
        report.alert_monthly,
    )
    with transaction.atomic():
        since = timezone.now() - timedelta(days=1)
        if AuditEvent.objects.filter(action=ALERT_ACTION, at__gte=since).exists():
            return report
        audit_record(
            ALERT_ACTION,
            actor=Actor.worker(),
            object_type="storage",
            object_id="all",
            object_repr="artifact storage",
            detail={
                "level": report.level,
                "monthly_cost": round(report.monthly_cost, 2),
                "projected_monthly_cost": round(report.projected_monthly_cost, 2),
                "stored_bytes": report.stored_bytes,
                "projected_bytes": report.projected_bytes,
                "price_gb_month": report.price_gb_month,
                "thresholds": {"warn": report.warn_monthly, "alert": report.alert_monthly},
                "profiles": {
                    p.code: {"stored_bytes": p.stored_bytes, "projected_bytes": p.projected_bytes}
                    for p in report.profiles
                },
            },
        )
    return report
