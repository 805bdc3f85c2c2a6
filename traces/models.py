from __future__ import annotations

from django.conf import settings
from django.db import models

from scopeweb.retention.models import RetentionProfile
from scopeweb_tracer.hooks import WIDTH_NAMES


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
    source_sha256 = models.CharField(
        max_length=64,
        help_text="sha256 of the uploaded file; for a profile that redacts before storage, its "
        "keyed digest (HMAC-SHA256 under SCOPEWEB_HASH_KEY).",
    )
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
    expires_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Set from the profile when imported."
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
    text = models.TextField(help_text="As stored: redacted where the profile requires it.")
    text_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="Keyed digest (HMAC-SHA256 under SCOPEWEB_HASH_KEY) of the original text, "
        "redacted or not: it matches a supplied original, and confirms no guess.",
    )
    redactions = models.JSONField(
        default=dict, blank=True, help_text="category -> count of spans redacted before storage"
    )
    messages = models.JSONField(
        default=list,
        blank=True,
        help_text="A conversation's messages ({role, content}), redacted as the text is, "
        "which then reads 'role: content' per message; empty for a text prompt.",
    )
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


class SaeRecord(models.Model):
    """A registered SAE: where it comes from, what it reads, and how good it is."""

    name = models.SlugField(max_length=120, unique=True)
    reference = models.CharField(
        max_length=500, help_text="A folder in the Gemma Scope 2 layout, or a hub reference."
    )
    model_name = models.CharField(max_length=200)
    site = models.CharField(max_length=40)
    layer = models.PositiveSmallIntegerField()
    width = models.PositiveIntegerField()
    hook_point = models.CharField(max_length=200)
    params_sha256 = models.CharField(max_length=64)
    shipped = models.BooleanField(default=False, help_text="Trained by this project.")
    description = models.TextField(blank=True)
    quality = models.JSONField(default=dict, help_text="l0, fvu, dead_share, delta_ce, tokens")
    quality_source = models.CharField(max_length=300, blank=True)
    quality_measured_at = models.DateTimeField(null=True, blank=True)
    target_mean = models.JSONField(
        default=list,
        blank=True,
        help_text="Dataset-level mean of what the SAE reconstructs: the centre of FVU.",
    )
    target_mean_source = models.CharField(max_length=300, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_name", "layer", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def width_name(self) -> str:
        """As Gemma Scope 2 names widths (16k, 65k, 262k, 1m), else the number."""
        return WIDTH_NAMES.get(self.width, f"{self.width:,}")


class AnalysisRun(models.Model):
    """One analysis of a prompt set with an SAE. Its job drives the state; chunks are the unit
    of work and of resumption (a retried task starts after ``chunks_done``)."""

    class DType(models.TextChoices):
        AUTO = "auto", "auto (bfloat16 where the worker has fast bfloat16, else float32)"
        FLOAT32 = "float32", "float32"
        BFLOAT16 = "bfloat16", "bfloat16"

    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="runs")
    sae = models.ForeignKey(SaeRecord, on_delete=models.PROTECT, related_name="runs")
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="run")
    top_k = models.PositiveSmallIntegerField(default=32)
    capture_limit = models.PositiveIntegerField(default=1000)
    dtype = models.CharField(
        max_length=10,
        choices=DType.choices,
        default=DType.AUTO,
        help_text="auto is replaced by the dtype the worker chose when the run starts.",
    )
    generate_tokens = models.PositiveIntegerField(default=0)
    seed = models.BigIntegerField(default=0)
    chunk_prompts = models.PositiveIntegerField(default=32)
    device_kind = models.CharField(max_length=100, blank=True)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    tokens_done = models.PositiveBigIntegerField(default=0)
    compute_seconds = models.FloatField(default=0.0)
    cancel_requested = models.BooleanField(default=False)
    pins = models.JSONField(default=dict, help_text="sha256 of model, tokenizer, SAE, prompts")
    summary = models.JSONField(default=dict)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When the run, its traces and its bundle expire (set from the profile).",
    )
    sq_err_total = models.FloatField(default=0.0, help_text="Σ‖y − ŷ‖² over its traces")
    sq_dev_total = models.FloatField(default=0.0, help_text="Σ‖y − μ‖² over its traces")
    checkpoint = models.CharField(
        max_length=300,
        blank=True,
        help_text="The model checkpoint run (a hub id or folder); blank: the SAE's model_name.",
    )
    pass_leader = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pass_members",
        help_text="The run whose worker computes this run in the same forward pass.",
    )
    reproduces = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reproductions",
        help_text="The run whose spec this one reran to check its hashes.",
    )
    stream_manifest = models.ForeignKey(
        "traces.InstrumentationManifest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="stream_runs",
        help_text="Set on a stream run: the manifest whose sampled requests it analyses.",
    )
    stream_day = models.DateField(null=True, blank=True, help_text="A stream run's UTC day.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stream_manifest", "stream_day", "sae"], name="one_stream_run_a_day"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.prompt_set} with {self.sae}"

    @property
    def artifact_prefix(self) -> str:
        return f"runs/{self.pk}"

    @property
    def model_reference(self) -> str:
        """What the worker loads: the chosen checkpoint, else the model the SAE was made for."""
        return self.checkpoint or self.sae.model_name

    @property
    def leader_id(self) -> int:
        """The run whose job computes this one: itself, or its pass's leader."""
        return self.pass_leader_id or self.pk


class Trace(models.Model):
    """One prompt's captured tokens; its arrays live in the chunk artifact at ``row``."""

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="traces")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="traces")
    chunk = models.PositiveIntegerField()
    row = models.PositiveIntegerField(help_text="First token row in the chunk's arrays.")
    tokens = models.PositiveIntegerField()
    prompt_tokens = models.PositiveIntegerField()
    truncated = models.BooleanField(default=False)
    completion = models.TextField(blank=True)
    l0 = models.FloatField()
    fvu = models.FloatField()
    resid_norm = models.FloatField()
    arrays_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["run", "prompt__position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "prompt"], name="trace_run_prompt_unique")
        ]
        # The trace list sorts by these, within a run and across runs (either direction).
        indexes = [models.Index(fields=["run", "id"], name="trace_run_id")] + [
            index
            for metric in ("tokens", "l0", "fvu", "resid_norm")
            for index in (
                models.Index(fields=["run", metric, "id"], name=f"trace_run_{metric}"),
                models.Index(fields=[metric, "id"], name=f"trace_{metric}"),
            )
        ]

    def __str__(self) -> str:
        return f"trace of prompt {self.prompt_id} in run {self.run_id}"


class TraceFeature(models.Model):
    """The search index: per (trace, feature) its peak, how often it fired, and where first."""

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="features")
    feature = models.PositiveIntegerField()
    max_activation = models.FloatField()
    count = models.PositiveIntegerField()
    first_position = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trace", "feature"], name="trace_feature_unique")
        ]
        indexes = [models.Index(fields=["feature", "-max_activation"])]

    def __str__(self) -> str:
        return f"feature {self.feature} in trace {self.trace_id}"


# The fixed safety vocabulary. A "watched feature" is an annotation holding at least one of these
# and a watch threshold; run metrics (flagged rate, unsafe output rate) count only those.
SAFETY_TAGS: tuple[str, ...] = (
    "deception",
    "violence",
    "self-harm",
    "pii",
    "cyber",
    "bio",
    "chem",
    "jailbreak",
    "bias",
)


class FeatureAnnotation(models.Model):
    """What reviewers know about one SAE latent. Edits go through ``annotation_save``, which
    keeps every change in ``FeatureAnnotationChange``."""

    sae = models.ForeignKey(SaeRecord, on_delete=models.PROTECT, related_name="annotations")
    index = models.PositiveIntegerField(help_text="The latent's index in the SAE.")
    label = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(
        default=list, help_text="Safety tags from the fixed vocabulary and free tags."
    )
    watch_threshold = models.FloatField(
        null=True, blank=True, help_text="Activation above which a trace is flagged."
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sae", "index"]
        constraints = [
            models.UniqueConstraint(fields=["sae", "index"], name="annotation_sae_index_unique")
        ]

    def __str__(self) -> str:
        return f"{self.sae.name} #{self.index}: {self.label or '(no label)'}"

    @property
    def safety_tags(self) -> list[str]:
        return [tag for tag in self.tags if tag in SAFETY_TAGS]

    @property
    def free_tags(self) -> list[str]:
        return [tag for tag in self.tags if tag not in SAFETY_TAGS]

    @property
    def watched(self) -> bool:
        return self.watch_threshold is not None and bool(self.safety_tags)


class FeatureAnnotationChange(models.Model):
    """One change of an annotation: who, when, how, and the changed fields before and after."""

    class Via(models.TextChoices):
        WEB = "web", "web"
        API = "api", "API"
        IMPORT = "import", "import"

    annotation = models.ForeignKey(
        FeatureAnnotation, on_delete=models.CASCADE, related_name="changes"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    via = models.CharField(max_length=8, choices=Via.choices, default=Via.WEB)
    before = models.JSONField()
    after = models.JSONField()

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"annotation {self.annotation_id} changed at {self.changed_at:%Y-%m-%d %H:%M}"


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


# Production tracing's models live beside their parsers; imported so the app registers them.
import traces.ingest.models  # noqa: E402, F401
