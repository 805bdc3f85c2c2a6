from __future__ import annotations

from django.conf import settings
from django.db import models

from scopeweb.retention.models import RetentionProfile


class PromptSet(models.Model):
    """An imported prompt set. It exists only once every prompt in its file passed the checks."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    source_filename = models.CharField(max_length=255)
    source_format = models.CharField(max_length=8)
    source_sha256 = models.CharField(max_length=64)
    source_bytes = models.PositiveBigIntegerField()
    prompt_count = models.PositiveIntegerField()
    token_total = models.PositiveBigIntegerField()
    token_max = models.PositiveIntegerField()
    capture_limit = models.PositiveIntegerField(help_text="The profile's limit at import time.")
    over_limit_count = models.PositiveIntegerField()
    tokenizer = models.CharField(max_length=100)
    import_job = models.OneToOneField(
        "jobs.Job", null=True, on_delete=models.SET_NULL, related_name="prompt_set"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    position = models.PositiveIntegerField(help_text="0-based order in the file.")
    line = models.PositiveIntegerField(help_text="Line of the file it came from.")
    external_id = models.CharField(max_length=200, blank=True)
    text = models.TextField()
    tags = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    token_count = models.PositiveIntegerField()
    over_capture_limit = models.BooleanField(default=False)

    class Meta:
        ordering = ["prompt_set", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt_set", "position"], name="prompt_position_unique"
            )
        ]

    def __str__(self) -> str:
        return self.text[:60]
