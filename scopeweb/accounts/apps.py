from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    from django.apps import apps as global_apps

    from scopeweb.accounts.role_sync import sync_roles

    # `flush` sends post_migrate without the historical app registry.
    sync_roles(kwargs.get("apps") or global_apps)


class AccountsConfig(AppConfig):
    name = "scopeweb.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        post_migrate.connect(_sync_after_migrate, sender=self)
        from scopeweb.accounts import schema  # noqa: F401  (registers the API key schemes)
