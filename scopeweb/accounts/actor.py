"""Who acts: the user, how they came in, and from where.

A view builds one ``Actor`` from its request (``Actor.of``) and hands it to the service; the
HTTP request stops at the view. Work outside a request names itself: ``Actor.command`` for a
management command, ``Actor.worker`` for a Celery task, ``Actor.system`` for the platform's own
doings (beat, signals). The audit log records the actor of every event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from scopeweb.accounts.access import user_may

if TYPE_CHECKING:  # DRF's Request proxies HttpRequest; importing it here would be circular
    from rest_framework.request import Request

SOURCE_MAX = 100


@dataclass(frozen=True)
class Actor:
    """``user``: who acts (None for the system or an anonymous caller); ``via``: ``web``,
    ``api``, ``api-token:<id>``, ``worker``, ``command`` or ``system``; ``source``: the
    client's address, when a request carried one."""

    user: User | None
    via: str
    source: str = ""

    @classmethod
    def of(cls, request: HttpRequest | Request) -> Actor:
        """The actor of a request: its signed-in user, its channel (a DRF token names itself),
        and the client's address."""
        found = getattr(request, "user", None)  # absent on requests no middleware saw
        user = found if isinstance(found, User) else None
        token_id = getattr(getattr(request, "auth", None), "pk", None)
        if token_id is not None:
            via = f"api-token:{token_id}"
        elif request.path.startswith("/api/"):
            via = "api"
        else:
            via = "web"
        source = str(request.META.get("REMOTE_ADDR", "") or "")[:SOURCE_MAX]
        return cls(user=user, via=via, source=source)

    @classmethod
    def command(cls, user: User | None = None) -> Actor:
        return cls(user=user, via="command")

    @classmethod
    def worker(cls, user: User | None = None) -> Actor:
        """A Celery task acting for ``user`` (who queued the job), or for nobody."""
        return cls(user=user, via="worker")

    @classmethod
    def system(cls) -> Actor:
        """The platform acting on its own (a failed sign-in with no request, for instance)."""
        return cls(user=None, via="system")

    @property
    def person(self) -> User:
        """The user acting, for a service that needs one (an opener, a signer, an author)."""
        if self.user is None:
            raise PermissionDenied("This action needs a signed-in user.")
        return self.user

    @property
    def username(self) -> str:
        return self.user.get_username() if self.user is not None else ""

    def may(self, capability: str) -> bool:
        """Whether the acting user holds ``capability`` (see ``scopeweb.accounts.roles``)."""
        return self.user is not None and user_may(self.user, capability)
