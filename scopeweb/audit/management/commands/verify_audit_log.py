from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import VERIFY_BATCH, audit_chain_check


class Command(BaseCommand):
    help = (
        "Walk the audit log's hash chain in id order and check every link. Exits 0 when the "
        "chain is whole; otherwise names the first broken link (event id, action, time and why) "
        "and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=VERIFY_BATCH,
            help=f"Events read per database round trip (default {VERIFY_BATCH}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1 (got {batch_size}).")
        report = audit_chain_check(batch_size=batch_size)
        if report.ok:
            events = f"{report.checked} event{'' if report.checked == 1 else 's'}"
            self.stdout.write(self.style.SUCCESS(f"Audit log verified: {events}, chain whole."))
            return
        event = AuditEvent.objects.filter(pk=report.broken_id or 0).first()
        where = (
            f"event {event.pk} ({event.action}, {event.at.isoformat()})"
            if event is not None
            else f"event {report.broken_id}"
        )
        raise CommandError(
            f"Audit log broken at {where}: {report.reason}. "
            f"{report.checked} events before it hold.",
            returncode=1,
        )
