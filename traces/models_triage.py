"""Triage of flagged traces: each decision a reviewer takes on a trace in the triage queue."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TriageReview(models.Model):
    """One decision on a trace in the triage queue; the rows are its history.

    ``reviewed`` takes the trace out of the queue for everyone. ``skipped`` only moves it to
    the back of the queue of the reviewer who skipped it (latest skip last); the others still
    see it in its place.
    """

    class Decision(models.TextChoices):
        REVIEWED = "reviewed", "reviewed"
        SKIPPED = "skipped", "skipped"

    trace = models.ForeignKey("traces.Trace", on_delete=models.CASCADE, related_name="triage")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [
            models.Index(fields=["trace", "decision"]),
            models.Index(fields=["reviewer", "decision", "trace"]),
        ]

    def __str__(self) -> str:
        return f"trace {self.trace_id} {self.decision} by {self.reviewer_id}"
