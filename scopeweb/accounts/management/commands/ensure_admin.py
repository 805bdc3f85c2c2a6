from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from scopeweb.accounts.services import admin_ensure
from scopeweb.env import env_secret, env_str


class Command(BaseCommand):
    help = (
        "Create a first admin when there is none. The user name comes from "
        "SCOPEWEB_ADMIN_USERNAME (default 'admin'), the password from SCOPEWEB_ADMIN_PASSWORD or "
        "SCOPEWEB_ADMIN_PASSWORD_FILE, or is generated and printed once. Never asks for input."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = admin_ensure(
                username=env_str("SCOPEWEB_ADMIN_USERNAME", "admin"),
                password=env_secret("SCOPEWEB_ADMIN_PASSWORD"),
                email=env_str("SCOPEWEB_ADMIN_EMAIL"),
            )
        except ValidationError as exc:
            raise CommandError(
                "SCOPEWEB_ADMIN_PASSWORD is refused: " + " ".join(exc.messages)
            ) from None
        if created is None:
            self.stdout.write("An admin exists already.")
            return
        user, password = created
        self.stdout.write(self.style.SUCCESS("Created the first admin. Sign in with:"))
        self.stdout.write(f"    user name: {user.username}")
        if env_secret("SCOPEWEB_ADMIN_PASSWORD"):
            self.stdout.write("    password:  (from SCOPEWEB_ADMIN_PASSWORD)")
        else:
            self.stdout.write(f"    password:  {password}")
            self.stdout.write("This password is shown only now; change it after signing in.")
