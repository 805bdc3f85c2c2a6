"""What governance keeps: legal holds, purge passes and controlled exports.

Export states (enforced by ``governance.services.exports``):

    awaiting_approval ──► queued ──► building ──► ready ──► downloaded
           │                              │
           └──► refused                   └──► failed

UK exports start awaiting an admin's approval (the GDPR review); others start queued. A ready
export is fetched once through a link whose token is kept only as a sha256; a second use, or a
use after ``link_expires_at``, is refused.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from scopeweb.retention.models import RetentionProfile


class ExportKind(models.TextChoices):
    RUN = "run", "Run"
    CASE = "case", "Case"


class ExportState(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting an admin's approval"
    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    READY = "ready", "Ready to download"
    DOWNLOADED = "downloaded", "Downloaded"
    REFUSED = "refused", "Refused"
    FAILED = "failed", "Failed"


class Export(models.Model):
    kind = models.CharField(max_length=10, choices=ExportKind.choices)
    target_id = models.PositiveBigIntegerField()
    target_repr = models.CharField(max_length=300, blank=True)
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=20, choices=ExportState.choices, db_index=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    purpose = models.TextField(blank=True, help_text="Why the data leaves the system.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    job = models.OneToOneField(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="export"
    )
    artifact = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    redaction_report = models.JSONField(default=dict, blank=True)
    link_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    link_expires_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    downloaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the export's artifact is purged."
    )

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.kind} {self.target_id}"


class HoldTarget(models.TextChoices):
    PROMPT_SET = "prompt_set", "Prompt set"
    RUN = "run", "Run"
    CASE = "case", "Case"


class LegalHold(models.Model):
    """A hold suspends expiry of everything under its target until lifted; both are audited."""

    target_type = models.CharField(max_length=20, choices=HoldTarget.choices)
    target_id = models.PositiveBigIntegerField()
    target_repr = models.CharField(max_length=300, blank=True)
    reason = models.TextField()
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    placed_at = models.DateTimeField(auto_now_add=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-placed_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="hold_target")]

    def __str__(self) -> str:
        return f"hold on {self.target_type} {self.target_id}"

    @property
    def active(self) -> bool:
        return self.lifted_at is None


class PurgeRun(models.Model):
    """One pass of the purge (scheduled, on demand, or a dry run) and what it removed."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    as_of = models.DateTimeField(help_text="The clock the purge judged expiry by.")
    dry_run = models.BooleanField(default=False)
    trigger = models.CharField(max_length=20, help_text="beat, command or web")
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    counts = models.JSONField(default=dict, help_text="kind -> items deleted (or listed)")
    bytes_freed = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"purge {self.pk} ({self.state})"
