"""PII detection and redaction: find spans, replace them by their category, report what was done.

Detection runs Presidio's analyzer (see ``recognizers``): pattern recognizers, and
detect-secrets' plugins for credentials. The analyzer is built once per process on first use
(about a second) and shared; an admin's patterns are passed per call as ad-hoc recognizers,
cached by their content, and so is spaCy's French NER for profiles with strong redaction (FR),
whose model loads once per process on first use.

What a profile does with each category is ``redaction_coverage``: redacted before storage (UK
``required``, FR ``strong``), or stored as given and redacted in exports and reports (US
``best_effort``), where credentials are also flagged (counted) at import (``pii_flags``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from scopeweb.redaction.custom import custom_patterns_of

if TYPE_CHECKING:
    from scopeweb.redaction.recognizers import Detector
    from scopeweb.retention.models import RetentionProfile

# Values of ``retention.models.Redaction`` (that module imports this package, so not from there).
NER_REDACTION = "strong"  # French NER runs under strong redaction (FR) only
# Found and counted, but kept, where a profile stores prompts as given (US ``best_effort``).
FLAGGED_CATEGORIES = ("CREDENTIAL",)


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


_ner: Any = None


def _ner_recognizer() -> Any:
    global _ner
    if _ner is None:
        from scopeweb.redaction.recognizers import FrenchNerRecognizer

        _ner = FrenchNerRecognizer()
    return _ner


def uses_ner(profile: RetentionProfile | None) -> bool:
    """Whether names and places are found under ``profile`` (spaCy's French NER)."""
    return profile is not None and profile.redaction == NER_REDACTION


def pii_find(
    text: str,
    profile: RetentionProfile | None = None,
    *,
    categories: tuple[str, ...] | None = None,
) -> list[PiiSpan]:
    """Every PII span in ``text`` (possibly overlapping), by start, then longest first; only
    ``categories`` when given (only their detectors run)."""
    if not text:
        return []
    from scopeweb.redaction.recognizers import LANGUAGE

    analyzer, _ = _analyzer()
    ad_hoc = list(_custom_recognizers(_custom(profile)))
    if uses_ner(profile):
        ad_hoc.append(_ner_recognizer())
    results = analyzer.analyze(
        text=text,
        language=LANGUAGE,
        entities=list(categories) if categories else None,
        ad_hoc_recognizers=ad_hoc or None,
    )
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


def pii_flags(text: str, profile: RetentionProfile) -> dict[str, int]:
    """Spans per category of ``FLAGGED_CATEGORIES`` found in ``text``, for a profile that
    stores prompts as given (US): they are counted, the text is kept. Empty for the others
    (their spans are redacted, and counted, by ``redact_text``)."""
    if profile.redacts_before_storage:
        return {}
    spans = _merged(pii_find(text, profile, categories=FLAGGED_CATEGORIES))
    return dict(sorted(Counter(s.category for s in spans).items()))


def detectors(profile: RetentionProfile | None = None) -> list[Detector]:
    """The built-in detectors, each with its category, version and method; with ``profile``,
    also the French NER where it runs and the profile's admin patterns."""
    from scopeweb.redaction.recognizers import (
        METHOD_CUSTOM,
        PRESIDIO_VERSION,
        Detector,
        ner_detector,
    )

    found = list(_analyzer()[1])
    if uses_ner(profile):
        found.append(ner_detector())
    version = f"admin pattern; presidio-analyzer {PRESIDIO_VERSION}"
    found += [
        Detector(f"custom:{name}", category, version, METHOD_CUSTOM)
        for name, _, category in _custom(profile)
    ]
    return found
