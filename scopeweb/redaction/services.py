"""PII detection and redaction: find spans, replace them by their category, report what was done.

Detection runs Presidio's analyzer with pattern recognizers only (see ``recognizers``). The
analyzer is built once per process on first use (about a second) and shared; an admin's patterns
are passed per call as ad-hoc recognizers, cached by their content.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from scopeweb.redaction.custom import custom_patterns_of

if TYPE_CHECKING:
    from scopeweb.redaction.recognizers import Detector
    from scopeweb.retention.models import RetentionProfile

REPORT_FORMAT = 1


@dataclass(frozen=True)
class PiiSpan:
    """``text[start:end]`` looks like ``category``, found by ``detector`` with ``score``."""

    start: int
    end: int
    category: str
    detector: str
    score: float


@dataclass(frozen=True)
class Redacted:
    """Redacted text; ``spans`` (merged, in the original's offsets) and ``counts`` per category."""

    text: str
    spans: tuple[PiiSpan, ...]
    counts: dict[str, int]


_lock = threading.Lock()
_engine: tuple[Any, list[Detector]] | None = None


def _analyzer() -> tuple[Any, list[Detector]]:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                from scopeweb.redaction.recognizers import build_analyzer

                _engine = build_analyzer()
    return _engine


@lru_cache(maxsize=64)
def _custom_recognizers(patterns: tuple[tuple[str, str, str], ...]) -> list[Any]:
    from scopeweb.redaction.recognizers import custom_recognizer

    return [custom_recognizer(name, regex, category) for name, regex, category in patterns]


def _custom(profile: RetentionProfile | None) -> tuple[tuple[str, str, str], ...]:
    return custom_patterns_of(profile.custom_patterns) if profile is not None else ()


def pii_find(text: str, profile: RetentionProfile | None = None) -> list[PiiSpan]:
    """Every PII span in ``text`` (possibly overlapping), by start, then longest first."""
    if not text:
        return []
    from scopeweb.redaction.recognizers import LANGUAGE

    analyzer, _ = _analyzer()
    ad_hoc = _custom_recognizers(_custom(profile)) or None
    results = analyzer.analyze(text=text, language=LANGUAGE, ad_hoc_recognizers=ad_hoc)
    spans = {
        PiiSpan(
            start=r.start,
            end=r.end,
            category=r.entity_type,
            detector=str((r.recognition_metadata or {}).get("recognizer_name", "")),
            score=round(float(r.score), 4),
        )
        for r in results
        if r.end > r.start
    }
    return sorted(spans, key=lambda s: (s.start, -s.end, -s.score, s.category))


def _merged(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Overlapping spans become one covering them all, labelled by its highest-scoring span
    (the longest on a tie), so a phone-shaped NHS number reads ``[UK_NHS]``."""
    groups: list[list[PiiSpan]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if groups and span.start < max(s.end for s in groups[-1]):
            groups[-1].append(span)
        else:
            groups.append([span])
    merged = []
    for group in groups:
        best = max(group, key=lambda s: (s.score, s.end - s.start, -s.start))
        end = max(s.end for s in group)
        merged.append(PiiSpan(group[0].start, end, best.category, best.detector, best.score))
    return merged


def redact_text(text: str, profile: RetentionProfile | None = None) -> Redacted:
    """``text`` with each PII span replaced by ``[CATEGORY]``; overlapping spans merged."""
    spans = _merged(pii_find(text, profile))
    parts: list[str] = []
    cursor = 0
    for span in spans:
        parts += [text[cursor : span.start], f"[{span.category}]"]
        cursor = span.end
    parts.append(text[cursor:])
    counts = dict(sorted(Counter(s.category for s in spans).items()))
    return Redacted(text="".join(parts), spans=tuple(spans), counts=counts)


def redact_tokens(
    tokens: list[str], profile: RetentionProfile | None = None
) -> tuple[list[str], list[str | None]]:
    """Token-aligned redaction: detection runs on ``"".join(tokens)`` (SentencePiece's ``▁``
    read as a space); each token overlapping a span is replaced, the first of a run by
    ``[CATEGORY]`` and the rest by ``""``. Returns the new tokens and each token's category
    (None when kept), both as long as ``tokens``, so a strip stays aligned with its activations.
    """
    text = "".join(tokens).replace("▁", " ")
    spans = _merged(pii_find(text, profile))
    out = list(tokens)
    categories: list[str | None] = [None] * len(tokens)
    if not spans:
        return out, categories
    bounds = []
    offset = 0
    for token in tokens:
        bounds.append((offset, offset + len(token)))
        offset += len(token)
    # Widen each span to whole tokens; spans that then share a token form one run.
    runs: list[tuple[int, int, str]] = []  # first token, last token (inclusive), category
    cursor = 0
    for span in spans:
        while cursor < len(tokens) and bounds[cursor][1] <= span.start:
            cursor += 1
        first = last = cursor
        while last + 1 < len(tokens) and bounds[last + 1][0] < span.end:
            last += 1
        if first >= len(tokens):
            break
        if runs and first <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(last, runs[-1][1]), runs[-1][2])
        else:
            runs.append((first, last, span.category))
    for first, last, category in runs:
        for index in range(first, last + 1):
            if bounds[index][0] == bounds[index][1]:
                continue  # an empty token holds no text; it stays as it is
            out[index] = f"[{category}]" if not any(categories[first:index]) else ""
            categories[index] = category
    return out, categories


def detectors() -> list[Detector]:
    """The built-in detectors, each with its category and version."""
    return list(_analyzer()[1])


def redaction_report(items: Iterable[Redacted]) -> dict[str, Any]:
    """What redaction did to ``items``: categories, counts (spans and items), and the detectors
    with their versions (the built-in ones always; admin patterns where they fired)."""
    from scopeweb.redaction.recognizers import PRESIDIO_VERSION, RULES_VERSION, SCORE_THRESHOLD

    counts: Counter[str] = Counter()
    item_counts: Counter[str] = Counter()
    by_detector: Counter[str] = Counter()
    custom: dict[str, str] = {}
    total = redacted = 0
    for item in items:
        total += 1
        redacted += bool(item.spans)
        counts.update(item.counts)
        item_counts.update(set(item.counts))
        for span in item.spans:
            by_detector[span.detector] += 1
            if span.detector.startswith("custom:"):
                custom[span.detector] = span.category
    listed = [
        {"name": d.name, "category": d.category, "version": d.version, "spans": by_detector[d.name]}
        for d in detectors()
    ]
    listed += [
        {
            "name": name,
            "category": category,
            "version": f"admin pattern; presidio-analyzer {PRESIDIO_VERSION}",
            "spans": by_detector[name],
        }
        for name, category in sorted(custom.items())
    ]
    return {
        "format": REPORT_FORMAT,
        "engine": {
            "presidio_analyzer": PRESIDIO_VERSION,
            "rules": RULES_VERSION,
            "score_threshold": SCORE_THRESHOLD,
        },
        "items": total,
        "items_redacted": redacted,
        "categories": sorted(counts),
        "counts": dict(sorted(counts.items())),
        "items_per_category": dict(sorted(item_counts.items())),
        "detectors": listed,
    }
