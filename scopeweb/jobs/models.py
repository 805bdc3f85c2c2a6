from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class JobKind(models.TextChoices):
    PROMPT_IMPORT = "prompt_import", "Prompt set import"
    ANALYSIS = "analysis", "Analysis run"
    STREAM = "stream", "Production stream (a day of sampled requests)"
    FEATURE_STATS = "feature_stats", "Logit lens and decoder neighbours"
    CASE_REPORT = "case_report", "Signed case report"
    EXPORT = "export", "Export bundle"
    PURGE = "purge", "Retention purge"
    GATE = "gate", "Gate run"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    """One background job, as the UI shows it. The task drives its state:

    queued → running → succeeded | failed | cancelled (a retried task goes running → running).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    TITLE_MAX = 200
    title = models.CharField(max_length=TITLE_MAX)
    params = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_note = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True, help_text="Why it failed, in words for its user.")
    error_details = models.JSONField(default=list, help_text="Itemised problems, if any.")
    attempts = models.PositiveSmallIntegerField(default=0)
    # Counted by the task base (scopeweb/jobs/tasks.py) before the task runs: a broker
    # redelivers a message whose worker died, and no Celery field counts that.
    deliveries = models.PositiveSmallIntegerField(
        default=0,
        help_text="Times a worker took the task message in delivery_key; above 1, a worker "
        "died while running it.",
    )
    delivery_key = models.CharField(
        max_length=100, blank=True, help_text="The task message counted: its id and retry."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "state"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.title} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def percent(self) -> int:
        if self.state == JobState.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())
