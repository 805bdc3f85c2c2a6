"""The Celery app. Workers: ``celery -A scopeweb worker -Q default,analysis``."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

from scopeweb.schedule import purge_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")

app = Celery("scopeweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "reap-stale-jobs": {
        "task": "scopeweb.jobs.tasks.jobs_reap_stale_task",
        "schedule": crontab(minute="*/10"),
    },
    # Production streams: a day's stream runs get their bundle manifest once the day is over.
    "close-stream-runs": {
        "task": "traces.tasks.stream_runs_close_task",
        "schedule": crontab(minute="5"),
    },
    # Daily by default; SCOPEWEB_PURGE_SCHEDULE ("m h dom mon dow") moves it.
    "retention-purge": {
        "task": "governance.tasks.retention_purge_scheduled_task",
        "schedule": purge_schedule(),
    },
}
