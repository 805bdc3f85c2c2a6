"""Audit cases: evidence, comments, sign-offs, and the signed PDF report of a signed-off case.

A case's states and their transitions (enforced by ``reports.services.cases``, never by ``save``):

    open ──► in_review ──► awaiting_sign_off ──► signed_off   (read-only from then on)
      │          │  ▲               │
      │          │  └───────────────┘ (sent back for more work)
      └──────────┴───────────────────┴────► closed            (without sign-off)

The case's history is its audit-log events (object type "auditcase").
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from scopeweb.retention.models import RetentionProfile
from traces.models import Trace


class CaseState(models.TextChoices):
    OPEN = "open", "Open"
    IN_REVIEW = "in_review", "In review"
    AWAITING_SIGN_OFF = "awaiting_sign_off", "Awaiting sign-off"
    SIGNED_OFF = "signed_off", "Signed off"
    CLOSED = "closed", "Closed without sign-off"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class AuditCase(models.Model):
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(
        max_length=20, choices=CaseState.choices, default=CaseState.OPEN, db_index=True
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    summary = models.TextField(
        "executive summary",
        blank=True,
        help_text="Written by the reviewers before sign-off; opens the report.",
    )
    signed_off_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.TextField(blank=True)
    hold_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The traces this case cites are kept at least until then "
        "(sign-off or close plus the profile's audit extension). Open cases hold without end.",
    )

    class Meta:
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"Case {self.pk}: {self.title}"

    @property
    def read_only(self) -> bool:
        return self.state in (CaseState.SIGNED_OFF, CaseState.CLOSED)


class Evidence(models.Model):
    """A trace's token range and the features that matter in it, with the cited artifacts'
    sha256 pinned at the time it was added."""

    case = models.ForeignKey(AuditCase, on_delete=models.CASCADE, related_name="evidence")
    trace = models.ForeignKey(Trace, on_delete=models.PROTECT, related_name="evidence")
    token_start = models.PositiveIntegerField()
    token_end = models.PositiveIntegerField(help_text="Exclusive.")
    features = models.JSONField(default=list, help_text="Feature indexes that matter, in order.")
    note = models.TextField(blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)
    added_from = models.CharField(max_length=20, default="case", help_text="trace, triage, case")
    pins = models.JSONField(
        default=dict, help_text="artifact name -> sha256 of each stored file the evidence cites"
    )
    token_text = models.TextField(blank=True, help_text="The range's text when it was added.")

    class Meta:
        ordering = ["case", "id"]

    def __str__(self) -> str:
        return (
            f"Evidence {self.pk} (trace {self.trace_id} tokens {self.token_start}–{self.token_end})"
        )


class CaseComment(models.Model):
    case = models.ForeignKey(AuditCase, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "created_at", "id"]

    def __str__(self) -> str:
        return f"Comment {self.pk} on case {self.case_id}"


class SignOff(models.Model):
    case = models.ForeignKey(AuditCase, on_delete=models.CASCADE, related_name="sign_offs")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    statement = models.TextField()
    signed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "signed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["case", "signer"], name="one_sign_off_per_signer")
        ]

    def __str__(self) -> str:
        return f"Sign-off of case {self.case_id} by {self.signer_id}"


class CaseReport(models.Model):
    """The signed PDF of a signed-off case. Exists only once signing succeeded."""

    case = models.OneToOneField(AuditCase, on_delete=models.PROTECT, related_name="report")
    job = models.OneToOneField("jobs.Job", null=True, on_delete=models.SET_NULL, related_name="+")
    artifact = models.CharField(max_length=300, help_text="Storage name of the signed PDF.")
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.PositiveBigIntegerField()
    pages = models.PositiveIntegerField(default=0)
    signer_subject = models.CharField(max_length=300)
    self_signed = models.BooleanField(default=False)
    timestamped = models.BooleanField(default=False)
    generated_at = models.DateTimeField(auto_now_add=True)
    generation_seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-generated_at"]

    def __str__(self) -> str:
        return f"Report of case {self.case_id} ({self.sha256[:12]})"
