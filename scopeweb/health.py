"""``/healthz``: the state of the database, the broker and storage, for load balancers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from scopeweb.accounts.access import PUBLIC, access
from scopeweb.storage import delete_file, store_new

log = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    from scopeweb.celery import app

    with app.connection_for_write() as conn:
        timeout = settings.HEALTH_BROKER_TIMEOUT  # seconds, a float: kombu's stub says int
        conn.ensure_connection(max_retries=1, timeout=timeout)  # type: ignore[arg-type]


def _storage() -> None:
    delete_file(store_new(f"health/{uuid.uuid4().hex}", b"ok"))


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "broker": _broker,
    "storage": _storage,
}


@access(PUBLIC)
def healthz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception:  # a health check reports failures; it must not raise them
            # The page is public: it says which part failed; the log says why (an exception's
            # text can hold host names, paths or credentials of a connection string).
            log.exception("health check %s failed", name)
            results[name] = {"ok": False, "error": "unavailable (see the server log)"}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round(1000 * (time.monotonic() - started), 1)
    healthy = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": results},
        status=200 if healthy else 503,
    )
