from __future__ import annotations

from django.http import HttpRequest

from scopeweb.accounts.access import user_may
from scopeweb.accounts.roles import CAPABILITIES
from scopeweb.accounts.services import user_roles


def roles(request: HttpRequest) -> dict[str, object]:
    """``user_roles`` and ``can`` (capability -> bool) for templates to show what a user may do."""
    user = getattr(request, "user", None)
    return {
        "user_roles": user_roles(user),
        "can": {name: user_may(user, name) for name in CAPABILITIES},
    }
