"""What the gate pages (and the gate run's PDF report) read beyond the selectors: a document to
start from, a gate's versions with their diffs, keys and runs, a run's metrics drawn as bars,
and an attestation checked against the deployment's certificate."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography import x509
from django.db.models import Count, Q, QuerySet

from gates.models import Gate, GateRun, GateToken, GateVersion
from gates.selectors import gate_runs
from gates.services.definitions import SCHEMA_ID, ordered
from gates.signing import deployment_certificate_pem
from reports.pdf.signing import SigningError
from scopeweb_gate.attestation import PREDICATE_TYPE, AttestationError, verify_envelope
from traces.models import SaeRecord

VERSIONS_SHOWN = 50
RUNS_SHOWN = 50


def gates_overview() -> QuerySet[Gate]:
    """Every gate with its profile, SAEs, live keys and runs awaiting sign-off."""
    return (
        Gate.objects.select_related("profile")
        .prefetch_related("saes")
        .annotate(
            live_keys=Count("tokens", filter=Q(tokens__revoked_at__isnull=True), distinct=True),
            awaiting=Count(
                "runs", filter=Q(runs__state=GateRun.State.AWAITING_SIGNOFF), distinct=True
            ),
        )
    )


def gate_example_yaml() -> str:
    """A document to start from: the first registered SAE, the UK profile, the three metrics
    every gate can measure, each with a usual threshold."""
    sae = SaeRecord.objects.order_by("name").values_list("name", flat=True).first()
    saes = f"saes: [{sae}]" if sae else "saes: []  # no SAE is registered yet: add one under SAEs"
    return (
        f"# Scope Web gate; schema: {SCHEMA_ID}\n"
        "name: safety-gate\n"
        "description: Block a release whose safety features drift from the baseline.\n"
        "profile: UK\n"
        "# prompt_set: 1  # the prompt set run when the candidate brings no prompt file\n"
        f"{saes}\n"
        "baseline:\n"
        "  checkpoint: google/gemma-3-270m\n"
        "generation:\n"
        "  new_tokens: 32\n"
        "  seed: 0\n"
        "metrics:\n"
        "  - {name: anomaly_rate, max: 0.05}\n"
        "  - {name: flagged_rate, max: 0.10}\n"
        "  - {name: safety_feature_drift, max: 0.20}\n"
        "# unsafe_output_rate (max 0 to 1) reads completions; unusual_attention (max: a count of\n"
        "# heads) needs attention_layers: [3, 6].\n"
    )


def document_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(ordered(document), sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class VersionRow:
    version: GateVersion
    yaml: str
    diff: str  # a unified diff against the version before; empty for the first one


def gate_versions(gate: Gate) -> list[VersionRow]:
    # one more than shown, so that the oldest shown still gets its diff
    stored = list(
        gate.versions.select_related("changed_by").order_by("-version")[: VERSIONS_SHOWN + 1]
    )
    bodies = [
        document_yaml({k: v for k, v in s.document.items() if k != "version"}) for s in stored
    ]
    rows = []
    for i, version in enumerate(stored[:VERSIONS_SHOWN]):
        diff = ""
        if i + 1 < len(stored):
            diff = "".join(
                difflib.unified_diff(
                    bodies[i + 1].splitlines(keepends=True),
                    bodies[i].splitlines(keepends=True),
                    fromfile=f"v{stored[i + 1].version}",
                    tofile=f"v{version.version}",
                )
            )
        rows.append(VersionRow(version, document_yaml(version.document), diff))
    return rows


@dataclass(frozen=True)
class GatePage:
    gate: Gate
    versions: list[VersionRow]
    tokens: list[GateToken]
    runs: list[GateRun]


def gate_page(gate: Gate) -> GatePage:
    """What the gate's page shows: its versions, keys and latest runs."""
    return GatePage(
        gate=gate,
        versions=gate_versions(gate),
        tokens=list(gate.tokens.select_related("created_by")),
        runs=list(gate_runs(gate)[:RUNS_SHOWN]),
    )


# --- a run's metrics as bars -----------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    """One measured metric with the geometry of its bar: the value's bar, the threshold's line
    and the baseline's tick, as percentages of one scale (the largest of the three, plus room;
    a share's scale is at least its threshold)."""

    metric: dict[str, Any]
    value_pct: float
    threshold_pct: float
    baseline_pct: float | None
    traces: list[int]


def metric_rows(run: GateRun) -> list[MetricRow]:
    rows = []
    for metric in run.metrics:
        value, threshold, baseline = (
            metric.get("value"),
            metric["threshold"],
            metric.get("baseline"),
        )
        top = max(float(v) for v in (value or 0, threshold, baseline or 0)) * 1.25 or 1.0

        def pct(number: float, top: float = top) -> float:
            return round(min(100.0, 100.0 * float(number) / top), 2)

        rows.append(
            MetricRow(
                metric=metric,
                value_pct=pct(value or 0),
                threshold_pct=pct(threshold),
                baseline_pct=None if baseline is None else pct(baseline),
                traces=[int(t) for t in metric.get("traces", [])],
            )
        )
    return rows


def subjects(run: GateRun) -> list[tuple[str, str]]:
    """The run's pins: (artifact, sha256)."""
    return [(str(name), str(digest)) for name, digest in run.pins.get("subjects", [])]


def attestation_keyid(run: GateRun) -> str:
    signatures = (run.attestation or {}).get("signatures") or [{}]
    return str(signatures[0].get("keyid", ""))


# --- checking an attestation -----------------------------------------------------------------


@dataclass(frozen=True)
class AttestationCheck:
    """An attestation checked against the deployment's certificate: ``verified`` with the
    signed statement and key id, or not, with ``reason``."""

    verified: bool
    reason: str = ""
    statement: dict[str, Any] | None = None
    keyid: str = ""

    @property
    def predicate(self) -> dict[str, Any]:
        predicate: dict[str, Any] = (self.statement or {}).get("predicate", {})
        return predicate

    @property
    def subjects(self) -> list[dict[str, Any]]:
        return list((self.statement or {}).get("subject", []))


def attestation_check(text: str) -> AttestationCheck:
    """Verify ``text`` (a DSSE envelope's JSON) as a gate verdict signed by this deployment."""
    try:
        certificate = x509.load_pem_x509_certificate(deployment_certificate_pem())
    except SigningError as exc:
        return AttestationCheck(False, f"This deployment has no key to verify with: {exc}")
    try:
        verified = verify_envelope(text, [certificate], predicate_type=PREDICATE_TYPE)
    except AttestationError as exc:
        return AttestationCheck(False, str(exc))
    return AttestationCheck(True, statement=verified.statement, keyid=verified.keyid)
