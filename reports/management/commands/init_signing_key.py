"""``manage.py init_signing_key``: a self-signed development key for signing reports."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.pdf.signing import dev_key_create, signing_key_path


class Command(BaseCommand):
    help = (
        "Make a self-signed development key and certificate (PKCS#12) for signing case reports, "
        "at SCOPEWEB_SIGNING_P12 (default: signing/signing-key.p12 in the data dir). Uses "
        "SCOPEWEB_SIGNING_P12_PASSPHRASE when set, else generates a passphrase and writes it "
        "beside the key. Refuses to replace an existing key without --force. Reports signed "
        "with it say that they are signed with a self-signed development key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Replace an existing key (reports signed "
            "with the old one then no longer verify as this deployment's)."
        )  # fmt: skip
        parser.add_argument(
            "--if-missing", action="store_true", help="Do nothing, successfully, when a key "
            "exists (what `make run` uses)."
        )  # fmt: skip
        parser.add_argument(
            "--common-name",
            default=f"Scope Web development key ({socket.gethostname()})",
            help="The certificate's subject common name.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = signing_key_path()
        if path.exists() and not options["force"]:
            if options["if_missing"]:
                if options["verbosity"] >= 1:
                    self.stdout.write(f"A signing key exists at {path}; kept.")
                return
            raise CommandError(
                f"A signing key already exists at {path}; use --force to replace it."
            )
        name = options["common_name"].strip()
        if not name or len(name) > 64:
            raise CommandError("--common-name must be 1 to 64 characters.")
        dev_key_create(path, common_name=name, passphrase=settings.SIGNING_P12_PASSPHRASE)
        if options["verbosity"] >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Wrote a self-signed development key for {name!r} to {path}. Reports "
                    "signed with it are labelled as such; configure a CA-issued key for "
                    "production."
                )
            )
