"""CI gates: a gate's definition (versioned, as a YAML document), its keys, its runs and the
reviewers' decisions on them.

A ``GateRun`` moves through these states (``GateRun.State``)::

    queued → running → failed                       (a metric missed its threshold)
                     → awaiting_signoff → passed    (every metric held; the sign-offs came)
                                        → rejected  (a reviewer rejected it)
                     → error                        (the run could not finish)

A passing run needs the sign-offs of its retention profile: ``signoffs_required`` distinct
reviewers, never the person who started it under four-eyes. One rejection ends it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from scopeweb.accounts.models import ServiceKey
from scopeweb.jobs.models import Job
from scopeweb.retention.models import RetentionProfile

GATE_TOKEN_PREFIX = "swg_"  # noqa: S105 (the prefix of every gate key)


class Gate(models.Model):
    """A gate's current definition. ``document`` is the whole YAML document of ``version``;
    the foreign keys are what it names, resolved when it was saved."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    document = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    prompt_set = models.ForeignKey(
        "traces.PromptSet", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    saes = models.ManyToManyField("traces.SaeRecord", related_name="+")
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class GateVersion(models.Model):
    """One version of a gate, whole, with who made it."""

    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="versions")
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
            models.UniqueConstraint(fields=["gate", "version"], name="gate_version_once")
        ]

    def __str__(self) -> str:
        return f"{self.gate.name} v{self.version}"


class GateToken(ServiceKey):
    """A key for one gate's runs over the API (``scopeweb-gate``) and nothing else."""

    key_prefix = GATE_TOKEN_PREFIX
    grants_rule = "gate_key"  # scopeweb.accounts.access.GATE_KEY: this gate's runs

    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="tokens")

    class Meta(ServiceKey.Meta):
        pass


class GateRun(models.Model):
    """One candidate put through one version of a gate (states in the module docstring)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        AWAITING_SIGNOFF = "awaiting_signoff", "Awaiting sign-off"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        ERROR = "error", "Error"

    FINISHED = (State.PASSED, State.FAILED, State.REJECTED, State.ERROR)

    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="runs")
    gate_version = models.PositiveIntegerField()
    document = models.JSONField(help_text="The gate's document at that version.")
    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    verdict = models.CharField(max_length=8, blank=True, help_text="pass, fail or error")
    label = models.CharField(max_length=200, blank=True, help_text="A commit, a pull request…")
    checkpoint = models.CharField(
        max_length=300, blank=True, help_text="The candidate checkpoint; blank: the baseline's."
    )
    prompt_set = models.ForeignKey(
        "traces.PromptSet", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    prompts_job = models.ForeignKey(
        Job,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The import of the candidate's own prompt file, run first by the gate's job.",
    )
    profile = models.ForeignKey(RetentionProfile, on_delete=models.PROTECT, related_name="+")
    candidate_run = models.ForeignKey(
        "traces.AnalysisRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    baseline_run = models.ForeignKey(
        "traces.AnalysisRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(default=list, help_text="Each metric's measured result.")
    pins = models.JSONField(default=dict, help_text="sha256 of model, SAEs, prompts, baseline")
    error = models.TextField(blank=True)
    attestation = models.JSONField(null=True, blank=True, help_text="The signed DSSE envelope.")
    attestation_error = models.CharField(max_length=500, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=40, default="web")
    created_at = models.DateTimeField(auto_now_add=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"gate run {self.pk} of {self.gate.name} v{self.gate_version}"

    @property
    def finished(self) -> bool:
        return self.state in self.FINISHED


class GateDecision(models.Model):
    """A reviewer's approval or rejection of a passing gate run, with a statement."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"

    run = models.ForeignKey(GateRun, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    statement = models.TextField()
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["decided_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["run", "reviewer"], name="gate_decision_once")
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by {self.reviewer} on {self.run}"
