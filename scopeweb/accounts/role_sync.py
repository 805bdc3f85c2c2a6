"""Make the role groups hold exactly the permissions ``CAPABILITIES`` gives them.

Called by the data migration (so a fresh install has the roles) and after every ``migrate`` (so a
changed capability reaches existing installs).
"""

from __future__ import annotations

from typing import Any

from scopeweb.accounts.roles import CAPABILITIES, Role


def sync_roles(apps: Any) -> None:
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    content_type_model = apps.get_model("contenttypes", "ContentType")
    content_type, _ = content_type_model.objects.get_or_create(
        app_label="accounts", model="rolecapability"
    )
    permissions = {}
    for codename, (text, _) in CAPABILITIES.items():
        permission, _ = permission_model.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": text}
        )
        permissions[codename] = permission
    for role in Role:
        group, _ = group_model.objects.get_or_create(name=role.value)
        group.permissions.set(
            [permissions[name] for name, (_, roles) in CAPABILITIES.items() if role in roles]
        )
