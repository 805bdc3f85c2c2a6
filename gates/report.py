"""The signed PDF report of a gate run, made with the case reports' machinery: a Django
template rendered by WeasyPrint (everything inline, no URL fetched) and signed with the
deployment's key by pyHanko (``reports.pdf.signing``).

It is made on request: a one-page table renders in well under a second, so no job is queued;
each download is signed afresh and recorded in the audit log (``gate_run.report``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from gates.models import GateRun
from gates.pages import attestation_keyid, metric_rows, subjects
from gates.services.attest import baseline_text, candidate_text, signoff_text
from gates.services.definitions import GateRefused
from reports.pdf.render import html_to_pdf
from reports.pdf.signing import sign_pdf, signing_key_load, signing_timestamps
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.storage import bytes_sha256

TEMPLATE = "gates/pdf/report.html"


@dataclass(frozen=True)
class GateReport:
    data: bytes
    pages: int
    filename: str


def report_context(run: GateRun, *, signer_subject: str, self_signed: bool) -> dict[str, Any]:
    generated: datetime = timezone.now()
    return {
        "run": run,
        "gate": run.gate,
        "rows": metric_rows(run),
        "decisions": list(run.decisions.select_related("reviewer")),
        "subjects": subjects(run),
        "keyid": attestation_keyid(run),
        "candidate": candidate_text(run),
        "baseline": baseline_text(run),
        "signoff": signoff_text(run),
        "signer_subject": signer_subject,
        "self_signed": self_signed,
        "timestamped": signing_timestamps(),
        "generated_at": generated,
    }


def report_html(context: dict[str, Any]) -> str:
    return render_to_string(TEMPLATE, context)


def gate_run_report(run: GateRun, *, actor: Actor) -> GateReport:
    """``run``'s report, rendered and signed. Raises ``GateRefused`` (404) before the run has
    its verdict, ``reports.pdf.signing.SigningError`` when the deployment's key cannot sign
    (no unsigned report is ever served)."""
    if not run.verdict:
        raise GateRefused(f"Gate run {run.pk} has no verdict yet: no report.", status=404)
    key = signing_key_load()
    html = report_html(report_context(run, signer_subject=key.subject, self_signed=key.self_signed))
    rendered = html_to_pdf(html)  # data: URLs only, bidi controls shown
    signed = sign_pdf(
        rendered.data,
        reason=f"Report of gate run {run.pk} ({run.gate.name} v{run.gate_version})",
        location="Scope Web",
        key=key,
    )
    audit_record(
        "gate_run.report",
        actor=actor,
        obj=run,
        detail={"sha256": bytes_sha256(signed.data), "pages": rendered.pages},
    )
    return GateReport(
        data=signed.data,
        pages=rendered.pages,
        filename=f"gate-{run.gate.name}-run-{run.pk}.pdf",
    )
