"""Production tracing: instrumentation manifests, their ingest tokens, and what came in.

An admin keeps one ``InstrumentationManifest`` per traced service: the checkpoint, the SAEs,
the sampling (a default rate, targeted rules, approved forensic windows), the capture limit,
the retention profile and whether completions are kept. Every save makes a new version, and
``ManifestVersion`` keeps each one whole, as retention profiles keep their changes.

Requests arrive in ``IngestBatch``es (one per accepted HTTP request). The originals lie in the
batch's file until a worker has analysed them; the database holds only what the profile lets
it store. Each sampled request becomes one ``IngestedRequest`` and, once analysed, one trace
of the day's stream run (``AnalysisRun.stream_manifest`` and ``stream_day``).

These models belong to the ``traces`` app (``traces.models`` imports this module).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from scopeweb.accounts.models import ServiceKey
from scopeweb.retention.models import RetentionProfile

RATE = [MinValueValidator(0.0), MaxValueValidator(1.0)]
INGEST_TOKEN_PREFIX = "swi_"  # noqa: S105 (the prefix of every ingest key)


class InstrumentationManifest(models.Model):
    """What a traced service samples, captures and keeps."""

    service = models.SlugField(max_length=100, unique=True, help_text="The traced service.")
    checkpoint = models.CharField(
        max_length=300, help_text="The model checkpoint the service runs (a hub id or folder)."
    )
    saes = models.ManyToManyField("traces.SaeRecord", related_name="+")
    sample_rate = models.FloatField(default=0.01, validators=RATE, help_text="Share 0 to 1.")
    rules = models.JSONField(
        default=list,
        blank=True,
        help_text='Targeted rules: [{"name", "match": {tag: value}, "rate"}]; first match wins.',
    )
    max_tokens_capture = models.PositiveIntegerField(
        default=1000, validators=[MinValueValidator(16), MaxValueValidator(32768)]
    )
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    keep_completions = models.BooleanField(default=True)
    top_k = models.PositiveSmallIntegerField(
        default=32, validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service"]

    def __str__(self) -> str:
        return f"{self.service} v{self.version}"


class ManifestVersion(models.Model):
    """One version of a manifest, whole (its YAML document), with who made it."""

    manifest = models.ForeignKey(
        InstrumentationManifest, on_delete=models.CASCADE, related_name="versions"
    )
    version = models.PositiveIntegerField()
    document = models.JSONField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    via = models.CharField(max_length=20, default="web")

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["manifest", "version"], name="manifest_version_once")
        ]

    def __str__(self) -> str:
        return f"{self.manifest.service} v{self.version}"


class ForensicWindow(models.Model):
    """100 % sampling between ``start`` and ``end`` for the requests ``match`` selects (all when
    empty). It applies only once an admin other than its requester approved it."""

    manifest = models.ForeignKey(
        InstrumentationManifest, on_delete=models.CASCADE, related_name="forensic_windows"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=500)
    match = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-start"]

    def __str__(self) -> str:
        return f"{self.manifest.service} forensic {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"


class IngestToken(ServiceKey):
    """A key that may post requests for one manifest and read nothing."""

    key_prefix = INGEST_TOKEN_PREFIX
    grants_rule = "ingest_key"  # scopeweb.accounts.access.INGEST_KEY: ingestion

    manifest = models.ForeignKey(
        InstrumentationManifest, on_delete=models.CASCADE, related_name="tokens"
    )

    class Meta(ServiceKey.Meta):
        pass


class IngestBatch(models.Model):
    """One accepted ingest request: its sampled records' originals in ``path`` until analysed."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Analysed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    manifest = models.ForeignKey(
        InstrumentationManifest, on_delete=models.CASCADE, related_name="batches"
    )
    via = models.CharField(max_length=20, help_text="tracer, otlp-json, otlp-protobuf or json")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    path = models.CharField(max_length=300, help_text="Storage path of the originals (JSON).")
    records = models.PositiveIntegerField()
    bytes = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["state", "received_at"])]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.records} requests, {self.state})"


class IngestedRequest(models.Model):
    """A sampled request, once per trace id and manifest, and the trace it became."""

    manifest = models.ForeignKey(
        InstrumentationManifest, on_delete=models.CASCADE, related_name="requests"
    )
    batch = models.ForeignKey(IngestBatch, on_delete=models.CASCADE, related_name="requests")
    otel_trace_id = models.CharField(max_length=32, help_text="The W3C trace id (32 hex).")
    position = models.PositiveIntegerField(help_text="Its place in the batch's file.")
    received_at = models.DateTimeField(auto_now_add=True)
    sample_rate = models.FloatField()
    sample_reason = models.CharField(max_length=200)
    manifest_version = models.PositiveIntegerField()
    tags = models.JSONField(default=dict)
    model = models.CharField(max_length=300, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    overhead_ms = models.FloatField(null=True, blank=True)
    trace = models.ForeignKey(
        "traces.Trace", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    token_check = models.CharField(
        max_length=200, blank=True, help_text="Recomputed token counts against the span's."
    )
    activations = models.CharField(
        max_length=300,
        blank=True,
        help_text="Whose activations the trace holds: the tracer's, or recomputed (and why).",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["manifest", "otel_trace_id"], name="ingest_trace_once")
        ]

    def __str__(self) -> str:
        return f"{self.manifest.service} {self.otel_trace_id}"


class IngestCount(models.Model):
    """A day's count of what ingestion turned away or let pass unsampled, per manifest."""

    manifest = models.ForeignKey(
        InstrumentationManifest, on_delete=models.CASCADE, related_name="counts"
    )
    day = models.DateField()
    kind = models.CharField(max_length=40)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["manifest", "day", "kind"], name="ingest_count_once")
        ]

    def __str__(self) -> str:
        return f"{self.manifest.service} {self.day} {self.kind}: {self.count}"
