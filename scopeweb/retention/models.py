from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from scopeweb.redaction.custom import MAX_CUSTOM_PATTERNS, validate_custom_patterns

TIER_DAYS = (30, 90, 365)
TIER_CHOICES = [(days, f"{days} days") for days in TIER_DAYS]
_rate = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Redaction(models.TextChoices):
    BEST_EFFORT = "best_effort", "Best-effort PII redaction (exports and reports)"
    REQUIRED = "required", "PII redaction required before storage and export"
    STRONG = "strong", "Strong redaction, documented with a redaction report"


# Profiles whose prompts are stored only redacted (the originals kept briefly, for the engine).
REDACTED_BEFORE_STORAGE = (Redaction.REQUIRED, Redaction.STRONG)


class ExportPolicy(models.TextChoices):
    ALLOWED = "allowed", "Allowed"
    GDPR_REVIEW = "gdpr_review", "GDPR review before export"
    CNIL_DOCUMENTED = "cnil_documented", "CNIL-style documentation with every export"


class RetentionProfile(models.Model):
    """A jurisdiction's rules for how long data lives, how it is redacted and who signs off."""

    code = models.CharField(max_length=8, unique=True)
    name = models.CharField(max_length=100)
    retention_days = models.PositiveIntegerField(choices=TIER_CHOICES, default=30)
    audit_extension_days = models.PositiveIntegerField(choices=TIER_CHOICES, default=90)
    redaction = models.CharField(max_length=20, choices=Redaction.choices)
    export_policy = models.CharField(max_length=20, choices=ExportPolicy.choices)
    four_eyes = models.BooleanField(
        "four-eyes sign-off",
        default=False,
        help_text="The case's opener alone can never sign it off.",
    )
    signoffs_required = models.PositiveSmallIntegerField(
        "sign-offs required",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Distinct reviewers who must sign a case off (1 to 5).",
    )
    sampling_baseline = models.FloatField(
        "baseline sampling rate", default=0.01, validators=_rate, help_text="Share from 0 to 1."
    )
    sampling_targeted = models.FloatField(
        "targeted sampling rate", default=0.05, validators=_rate, help_text="Share from 0 to 1."
    )
    sampling_forensic = models.FloatField(
        "forensic sampling rate", default=1.0, validators=_rate, help_text="Share from 0 to 1."
    )
    capture_limit = models.PositiveIntegerField(
        default=1000,
        validators=[MinValueValidator(16), MaxValueValidator(32768)],
        help_text="Tokens captured per trace; longer prompts are marked.",
    )
    custom_patterns = models.JSONField(
        "custom redaction patterns",
        default=list,
        blank=True,
        validators=[validate_custom_patterns],
        help_text=(
            'A JSON list of {"name", "regex", "category"}, at most '
            f"{MAX_CUSTOM_PATTERNS}; the category is one upper-case word and replaces the "
            'match, e.g. [{"name": "ticket", "regex": "TCK-\\\\d{6}", "category": "TICKET"}].'
        ),
    )

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    @property
    def redacts_before_storage(self) -> bool:
        """Whether prompts under this profile are stored redacted (UK, FR)."""
        return self.redaction in REDACTED_BEFORE_STORAGE


EDITABLE_FIELDS = (
    "name",
    "retention_days",
    "audit_extension_days",
    "redaction",
    "export_policy",
    "four_eyes",
    "signoffs_required",
    "sampling_baseline",
    "sampling_targeted",
    "sampling_forensic",
    "capture_limit",
    "custom_patterns",
)


class RetentionProfileChange(models.Model):
    """One edit of a profile: who, when, and the changed fields before and after."""

    profile = models.ForeignKey(RetentionProfile, on_delete=models.CASCADE, related_name="changes")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    before = models.JSONField()
    after = models.JSONField()

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.profile.code} changed at {self.changed_at:%Y-%m-%d %H:%M}"
