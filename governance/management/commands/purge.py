"""``manage.py purge``: delete what has expired and nothing holds (what beat runs daily)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from governance.services.purge import purge_preview, retention_purge


def _as_of(value: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CommandError(
                f"--as-of {value!r} is not an ISO date-time, e.g. 2026-03-01T00:00:00Z."
            ) from None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Purge expired prompt sets, runs (traces, index rows, bundle files) and exports that no "
        "legal hold or case protects, and original uploads of UK/FR prompt sets older than "
        "SCOPEWEB_ORIGINAL_HOURS. Each deletion is audited; a rerun finishes an interrupted "
        "purge. --as-of judges expiry by another clock (to try what a later purge removes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would go; delete nothing."
        )
        parser.add_argument(
            "--as-of",
            metavar="ISO-DATETIME",
            help="Judge expiry as if it were then (default: now), e.g. 2026-03-01T00:00:00Z.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = _as_of(options["as_of"]) if options["as_of"] else timezone.now()
        if options["dry_run"]:
            for item in purge_preview(as_of, sizes=True):
                expires = f"expired {item.expires_at:%Y-%m-%d %H:%M}" if item.expires_at else ""
                self.stdout.write(
                    f"would purge {item.kind[:-1]} {item.pk}: {item.label} "
                    f"({item.files} files, {item.bytes:,} bytes) {expires}".rstrip()
                )
        record = retention_purge(as_of=as_of, dry_run=options["dry_run"], trigger="command")
        counts = ", ".join(f"{value} {key}" for key, value in record.counts.items() if value)
        verb = "would purge" if record.dry_run else "purged"
        self.stdout.write(
            self.style.SUCCESS(
                f"Purge {record.pk} as of {as_of:%Y-%m-%d %H:%M %Z}: {verb} "
                f"{counts or 'nothing'}; {record.bytes_freed:,} bytes."
            )
        )
