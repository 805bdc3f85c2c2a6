"""What a case's report shows, gathered from the database and the trace bundles: plain data for
the templates under ``templates/reports/pdf/``. Text is redacted here, as the case's profile
requires (``scopeweb.redaction``), so the template never sees an unredacted string.

Sections: cover, executive summary, one section per piece of evidence (the coloured token strip
of its range, its feature table, the reviewer's note), the cited runs' metrics with plots, the
methodology, the sign-offs, and an appendix of every cited artifact with its sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.safestring import SafeString

from reports.models import AuditCase, Evidence
from scopeweb.audit.services import ChainHead, audit_head
from scopeweb.redaction import redact_text, redact_tokens
from scopeweb.retention.models import RetentionProfile
from traces.bundle.manifest import manifest_path
from traces.display.colours import ORANGES, activation_style, palette_colour
from traces.display.plots import metric_histograms
from traces.models import AnalysisRun
from traces.selectors.features import annotation_labels
from traces.selectors.run_metrics import run_metrics
from traces.selectors.trace_tokens import ArraysGone, TraceTokens, trace_token_view
from traces.services.feature_stats import feature_lens, feature_stats_ready
from traces.tokens import visible_text

CONTEXT_TOKENS = 6  # tokens drawn, uncoloured, on either side of an evidence range
STRIP_LIMIT = 400  # tokens of one range drawn in the strip; the rest are counted
LENS_TOKENS = 5
HISTOGRAM_BINS = 16


@dataclass(frozen=True)
class StripCell:
    shown: str
    style: str
    classes: str
    breaks: int


@dataclass(frozen=True)
class FeatureRow:
    index: int
    label: str
    tags: list[str]
    peak: float | None  # max activation over the range's tokens where the feature is kept
    tokens_active: int
    lens: list[str]  # the logit lens's promoted tokens, strongest first ([] when not computed)


@dataclass(frozen=True)
class EvidenceSection:
    number: int
    evidence: Evidence
    trace_id: int
    run_id: int
    prompt_ref: str
    start: int
    end: int
    colour_feature: int | None
    colour_label: str
    colour_top: float
    strip: list[StripCell]
    strip_omitted: int
    quote: str
    features: list[FeatureRow]
    note: str
    added_by: str
    lens_computed: bool
    arrays_gone: bool = False


@dataclass(frozen=True)
class RunSection:
    run: AnalysisRun
    traces: int
    flagged: str
    unsafe_output: str
    watched: int
    plots: list[SafeString]
    pins: dict[str, str]
    means: str  # mean L0 / FVU / residual norm over the run's traces


@dataclass(frozen=True)
class SignOffRow:
    signer: str
    statement: str
    signed_at: datetime


@dataclass(frozen=True)
class PinRow:
    artifact: str
    sha256: str
    cited_by: str


@dataclass
class ReportDocument:
    case: AuditCase
    title: str
    description: str
    profile: RetentionProfile
    generated_at: datetime
    opened_by: str
    signers: list[str]
    summary: str
    evidence: list[EvidenceSection]
    runs: list[RunSection]
    sign_offs: list[SignOffRow]
    pins: list[PinRow]
    signer_subject: str
    self_signed: bool
    timestamped: bool
    redactions: dict[str, int] = field(default_factory=dict)  # entity kind -> count
    legend_gradient: str = ""
    audit_head: ChainHead | None = None  # the audit log's newest event as the report was made


def _who(user: User | None) -> str:
    if user is None:
        return "(removed user)"
    full = user.get_full_name()
    return f"{full} ({user.username})" if full else user.username


class _Redactor:
    """Redacts as the profile requires and counts what it removed, for the report's note."""

    def __init__(self, profile: RetentionProfile) -> None:
        self.profile = profile
        self.counts: dict[str, int] = {}

    def text(self, text: str) -> str:
        if not text:
            return text
        found = redact_text(text, self.profile)
        for kind, count in found.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + int(count)
        return str(found.text)

    def tokens(self, texts: list[str]) -> tuple[list[str], list[str | None]]:
        if not texts:
            return [], []
        shown, kinds = redact_tokens(texts, self.profile)
        for text, kind in zip(shown, kinds, strict=True):
            if kind is not None and text:  # the first token of each redacted run
                self.counts[kind] = self.counts.get(kind, 0) + 1
        return list(shown), list(kinds)


def _strip(
    view: TraceTokens, evidence: Evidence, feature: int | None, redactor: _Redactor
) -> tuple[list[StripCell], int, float, str]:
    """The range's tokens (and a little context) as coloured cells, the count left off, the
    scale's top and the redacted text of the range."""
    tokens = view.tokens
    start = min(evidence.token_start, len(tokens))
    end = min(max(evidence.token_end, start), len(tokens))
    shown_end = min(end, start + STRIP_LIMIT)
    before = max(0, start - CONTEXT_TOKENS)
    after = min(len(tokens), shown_end + CONTEXT_TOKENS)
    window = tokens[before:after]
    # Redaction reads the whole trace, so PII that straddles the window's edge is still found.
    all_texts, all_kinds = redactor.tokens([t.text for t in tokens])
    # Tokens redacted before storage (UK, FR) read "[CATEGORY]" then "": keep their category.
    for token in tokens:
        if token.redacted is not None and token.text:  # the first token of each span
            redactor.counts[token.redacted] = redactor.counts.get(token.redacted, 0) + 1
    all_kinds = [kind or token.redacted for kind, token in zip(all_kinds, tokens, strict=True)]
    texts, kinds = all_texts[before:after], all_kinds[before:after]
    # The scale's top: the feature's largest activation on the trace after BOS, as on the
    # trace page, so a range's colours read the same in the report and in the browser.
    values = [dict(t.features).get(feature, 0.0) if feature is not None else 0.0 for t in tokens]
    top = max(values[1:] or values, default=0.0)
    cells = []
    quote = []
    for token, text, kind in zip(window, texts, kinds, strict=True):
        inside = start <= token.position < shown_end
        classes = ["tok", "in" if inside else "ctx"]
        if token.is_bos:
            classes.append("bos")
        if token.is_completion:
            classes.append("completion")
        if kind is not None:
            if not text:  # the rest of a redacted run: its first token shows the category
                continue
            classes.append("redacted")
            shown = text
        elif token.is_bos and token.shown == "BOS":
            shown = "BOS"
        else:
            shown = visible_text(text)
        style = activation_style(values[token.position], top) if inside else ""
        cells.append(StripCell(shown, style, " ".join(classes), token.newlines if not kind else 0))
        if start <= token.position < end:
            quote.append(text if not token.is_bos else "")
    omitted = end - shown_end
    quote.extend(all_texts[shown_end:end])  # the range past the strip's limit
    return cells, omitted, top, "".join(quote)


def _feature_rows(
    view: TraceTokens | None, evidence: Evidence, labels: dict[int, tuple[str, list[str]]]
) -> tuple[list[FeatureRow], bool]:
    sae = evidence.trace.run.sae
    computed = feature_stats_ready(sae)
    rows = []
    for index in [int(f) for f in evidence.features]:
        peak: float | None = None
        active = 0
        if view is not None:
            for token in view.tokens[evidence.token_start : evidence.token_end]:
                value = dict(token.features).get(index)
                if value is not None:
                    active += 1
                    peak = value if peak is None else max(peak, value)
        lens = feature_lens(sae, index) if computed else None
        label, tags = labels.get(index, ("", []))
        rows.append(
            FeatureRow(
                index=index,
                label=label,
                tags=tags,
                peak=peak,
                tokens_active=active,
                lens=[t.shown for t in lens.promoted[:LENS_TOKENS]] if lens else [],
            )
        )
    return rows, computed


def _evidence_section(number: int, evidence: Evidence, redactor: _Redactor) -> EvidenceSection:
    trace = evidence.trace
    run = trace.run
    features = [int(f) for f in evidence.features]
    found = annotation_labels(run.sae_id, set(features))
    labels = {i: (label.label, label.safety_tags) for i, label in found.items()}
    colour = features[0] if features else None
    view: TraceTokens | None
    try:
        view = trace_token_view(trace)
    except ArraysGone:
        view = None
    if view is not None:
        strip, omitted, top, quote = _strip(view, evidence, colour, redactor)
    else:
        strip, omitted, top, quote = [], 0, 0.0, redactor.text(evidence.token_text)
    rows, computed = _feature_rows(view, evidence, labels)
    prompt = trace.prompt
    return EvidenceSection(
        number=number,
        evidence=evidence,
        trace_id=trace.pk,
        run_id=run.pk,
        prompt_ref=redactor.text(prompt.external_id) or f"prompt {prompt.position}",
        start=evidence.token_start,
        end=evidence.token_end,
        colour_feature=colour,
        colour_label=labels.get(colour, ("", []))[0] if colour is not None else "",
        colour_top=top,
        strip=strip,
        strip_omitted=omitted,
        quote=quote,
        features=rows,
        note=redactor.text(evidence.note),
        added_by=_who(evidence.added_by),
        lens_computed=computed,
        arrays_gone=view is None,
    )


def _run_section(run: AnalysisRun) -> RunSection:
    metrics = run_metrics(run)
    plots = metric_histograms(metrics, bins=HISTOGRAM_BINS, width=330, height=200)
    unsafe = metrics.unsafe_output.rate
    return RunSection(
        run=run,
        traces=len(metrics.values["l0"]),
        flagged=(
            f"{metrics.flagged.percent} ({metrics.flagged.count} of {metrics.flagged.total})"
            if metrics.watched
            else "n/a (the SAE has no watched features)"
        ),
        unsafe_output=(
            "n/a (the run generated no completions)"
            if unsafe is None
            else f"{unsafe.percent} ({unsafe.count} of {unsafe.total})"
        ),
        watched=len(metrics.watched),
        plots=plots,
        pins=dict(sorted((run.pins or {}).items())),
        means=" / ".join(f"{sum(v) / len(v):.4g}" if v else "–" for v in metrics.values.values()),
    )


def _pins(sections: list[EvidenceSection], runs: list[AnalysisRun]) -> list[PinRow]:
    rows: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        for name, sha in sorted((run.pins or {}).items()):
            rows.setdefault((f"run {run.pk}: {name}", str(sha)), []).append(f"run {run.pk}")
        if run.manifest_sha256:
            manifest = (manifest_path(run.artifact_prefix), run.manifest_sha256)
            rows.setdefault(manifest, []).append(f"run {run.pk}")
    for section in sections:
        cited = f"evidence {section.number}"
        for name, sha in sorted((section.evidence.pins or {}).items()):
            rows.setdefault((str(name), str(sha)), []).append(cited)
        arrays = section.evidence.trace.arrays_sha256
        if arrays:
            rows.setdefault((f"trace {section.trace_id} arrays", arrays), []).append(cited)
    return [
        PinRow(name, sha, ", ".join(dict.fromkeys(cited)))
        for (name, sha), cited in sorted(rows.items())
    ]


def report_document(
    case: AuditCase, *, signer_subject: str, self_signed: bool, timestamped: bool
) -> ReportDocument:
    """Everything the report of ``case`` shows, redacted for its profile."""
    profile = case.profile
    redactor = _Redactor(profile)
    evidence = list(
        case.evidence.select_related(
            "trace__run__sae", "trace__run__prompt_set", "trace__prompt", "added_by"
        ).order_by("id")
    )
    sections = [_evidence_section(n, e, redactor) for n, e in enumerate(evidence, start=1)]
    runs = list({e.trace.run_id: e.trace.run for e in evidence}.values())
    sign_offs = [
        SignOffRow(_who(s.signer), redactor.text(s.statement), s.signed_at)
        for s in case.sign_offs.select_related("signer").order_by("signed_at", "id")
    ]
    return ReportDocument(
        case=case,
        title=redactor.text(case.title),
        description=redactor.text(case.description),
        profile=profile,
        generated_at=timezone.now(),
        opened_by=_who(case.opened_by),
        signers=[row.signer for row in sign_offs],
        summary=redactor.text(case.summary),
        evidence=sections,
        runs=[_run_section(run) for run in runs],
        sign_offs=sign_offs,
        pins=_pins(sections, runs),
        signer_subject=signer_subject,
        self_signed=self_signed,
        timestamped=timestamped,
        redactions=dict(sorted(redactor.counts.items())),
        legend_gradient=", ".join(palette_colour(ORANGES, 0.12 + 0.88 * s / 4) for s in range(5)),
        audit_head=audit_head(),
    )
