"""The purge's beat schedule, read from a crontab string ("m h dom mon dow").

Imported by settings, so it must not import Django models.
"""

from __future__ import annotations

from collections.abc import Mapping

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from scopeweb.env import env_str

CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_crontab(name: str, value: str) -> dict[str, str]:
    """The five fields of ``value`` by crontab's keyword names; ``ImproperlyConfigured`` naming
    the variable when it has not five fields or one is out of range."""
    fields = value.split()
    if len(fields) != len(CRONTAB_FIELDS):
        raise ImproperlyConfigured(
            f'{name}={value!r}: expected 5 fields "minute hour day-of-month month day-of-week", '
            f'e.g. "30 3 * * *"; got {len(fields)}.'
        )
    schedule = dict(zip(CRONTAB_FIELDS, fields, strict=True))
    try:
        crontab(**schedule)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r}: {exc}") from None
    return schedule


PURGE_SCHEDULE_ENV = "SCOPEWEB_PURGE_SCHEDULE"
PURGE_SCHEDULE_DEFAULT = "30 3 * * *"  # daily at 03:30 (the worker's time zone, UTC by default)


def purge_schedule_fields(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The purge's schedule from ``SCOPEWEB_PURGE_SCHEDULE`` (read without Django settings, so
    the Celery app can build its beat schedule at import)."""
    value = env_str(PURGE_SCHEDULE_ENV, PURGE_SCHEDULE_DEFAULT, environ)
    return parse_crontab(PURGE_SCHEDULE_ENV, value)


def purge_schedule(environ: Mapping[str, str] | None = None) -> crontab:
    return crontab(**purge_schedule_fields(environ))
