from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    from scopeweb.accounts.role_sync import sync_roles

    sync_roles(kwargs["apps"])


class AccountsConfig(AppConfig):
    name = "scopeweb.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        post_migrate.connect(_sync_after_migrate, sender=self)
