from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import VERIFY_BATCH, anchor_problem, audit_chain_check


class Command(BaseCommand):
    help = (
        "Walk the audit log's hash chain in id order and check every link, and that the log still "
        "holds each --anchor (an event quoted outside it, as every signed report does). Exits 0 "
        "when all hold; otherwise names the first broken link or missing anchor and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=VERIFY_BATCH,
            help=f"Events read per database round trip (default {VERIFY_BATCH}).",
        )
        parser.add_argument(
            "--anchor",
            action="append",
            default=[],
            metavar="ID:SHA256",
            help="An event the log must still hold with this hash (repeatable). Signed reports "
            "print the log's head at signing in this form: a log cut back or rewritten since "
            "fails here, which the chain alone cannot show.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1 (got {batch_size}).")
        report = audit_chain_check(batch_size=batch_size)
        if report.ok:
            problems = [p for p in map(anchor_problem, options["anchor"]) if p]
            if problems:
                raise CommandError(
                    f"Audit log chain whole ({report.checked} events), but "
                    + "; ".join(problems)
                    + ".",
                    returncode=1,
                )
            events = f"{report.checked} event{'' if report.checked == 1 else 's'}"
            anchors = len(options["anchor"])
            held = f", {anchors} anchor{'' if anchors == 1 else 's'} held" if anchors else ""
            self.stdout.write(
                self.style.SUCCESS(f"Audit log verified: {events}, chain whole{held}.")
            )
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
