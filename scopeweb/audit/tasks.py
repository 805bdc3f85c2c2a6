"""The audit log's one task: closing a window of failed sign-ins (``sign_ins``)."""

from __future__ import annotations

from scopeweb.audit.sign_ins import sign_in_window_close
from scopeweb.jobs.tasks import retried_task


@retried_task(max_retries=5, soft_time_limit=60, time_limit=90)
def audit_sign_in_window_close_task(username: str, opened: str) -> None:
    sign_in_window_close(username=username, opened=opened)
