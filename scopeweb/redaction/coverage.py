"""What each retention profile does with each category of PII, by which method, what it
misses (``redaction_coverage``, side by side in ``redaction_coverage_table``), and what one
redaction did to a set of items (``redaction_report``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from scopeweb.redaction.services import FLAGGED_CATEGORIES, Redacted, detectors, uses_ner

if TYPE_CHECKING:
    from scopeweb.redaction.recognizers import Detector
    from scopeweb.retention.models import RetentionProfile

REPORT_FORMAT = 2

GAP_ENGLISH_NAMES = (
    "Names of people and places in English text are not detected: no maintained English NER "
    "model installs from the package registries this deployment uses (spaCy's "
    "en-core-web-sm/md/lg are absent there; en-core-web-trf 999.9.9 is a name squatter's "
    "placeholder). Admin patterns can cover known names and identifiers."
)
GAP_NAMES_NOT_STRONG = (
    "Names of people and places are not detected under this profile in any language: the "
    "French NER model runs only under strong redaction (FR)."
)
GAP_NER_STATISTICAL = (
    "PERSON and LOCATION come from a statistical model trained on French news: it misses some "
    "names (lower-case, rare, foreign, or names in English text) and can mark words that are "
    "not names."
)
GAP_ADDRESSES = (
    "Street addresses and postcodes are not detected as such (a French place name may be, as "
    "LOCATION, under strong redaction): the address tools on PyPI are a parser that labels an "
    "address it is given (usaddress), not a finder in free text, or unmaintained since 2020 "
    "(pyap)."
)
GAP_CREDENTIALS = (
    "Passwords are found after a keyword followed by ':' or '=' (password: ..., mot de passe "
    ": ...), not in free prose ('my password is ...'); a key without a known prefix only when "
    "it is long and random enough (detect-secrets' base64 entropy limit, 4.5 bits per "
    "character, so 23 characters or more). Hex strings (hashes, commit ids) are never taken "
    "for keys."
)


def _action(profile: RetentionProfile, category: str) -> str:
    if profile.redacts_before_storage:
        return "redacted before storage, and in exports and reports"
    if category in FLAGGED_CATEGORIES:
        return "stored as given and flagged (counted) at import; redacted in exports and reports"
    return "stored as given; redacted in exports and reports"


def redaction_coverage(profile: RetentionProfile) -> dict[str, Any]:
    """What ``profile`` does with each category, found by which method, and what it misses.

    The same for every profile of one redaction level, except for its admin patterns; no
    model is loaded to say it."""
    by_category: dict[str, list[Detector]] = {}
    for detector in detectors(profile):
        for category in detector.category.split(", "):
            by_category.setdefault(category, []).append(detector)
    categories = []
    for category, found in by_category.items():
        methods: dict[tuple[str, str], list[str]] = {}
        for detector in found:
            methods.setdefault((detector.method, detector.version), []).append(detector.name)
        categories.append(
            {
                "category": category,
                "action": _action(profile, category),
                "methods": [
                    {"method": method, "version": version, "detectors": names}
                    for (method, version), names in methods.items()
                ],
            }
        )
    gaps = [GAP_ENGLISH_NAMES]
    gaps.append(GAP_NER_STATISTICAL if uses_ner(profile) else GAP_NAMES_NOT_STRONG)
    gaps += [GAP_ADDRESSES, GAP_CREDENTIALS]
    if profile.redacts_before_storage:
        stored = (
            "redacted before storage: every field of a prompt (its text, a conversation's "
            "messages, its id, tags, and every metadata value: extra CSV columns and JSONL "
            "keys, whose names are kept) and every token string of its traces"
        )
    else:
        stored = (
            "as given; credentials are flagged (counted) at import, in the text and every "
            "other field"
        )
    return {
        "profile": profile.code,
        "redaction": profile.redaction,
        "stored": stored,
        "exports": "every text and token string of an export, case evidence and PDF reports",
        "categories": categories,
        "gaps": gaps,
    }


def _short_action(profile: RetentionProfile, category: str) -> str:
    if profile.redacts_before_storage:
        return "redacted"
    if category in FLAGGED_CATEGORIES:
        return "flagged; redacted in exports"
    return "redacted in exports"


def redaction_coverage_table(profiles: Iterable[RetentionProfile]) -> dict[str, Any]:
    """``redaction_coverage`` of ``profiles`` side by side: one row per category, its methods,
    and per profile what happens to it ("not detected" where the profile has no detector)."""
    from scopeweb.redaction.recognizers import METHOD_CUSTOM

    covered = [(profile, redaction_coverage(profile)) for profile in profiles]
    rows: dict[str, dict[str, Any]] = {}
    for profile, coverage in covered:
        for item in coverage["categories"]:
            row = rows.setdefault(item["category"], {"category": item["category"], "methods": {}})
            for method in item["methods"]:
                label = method["method"]
                if label == METHOD_CUSTOM:
                    label = f"admin pattern of {profile.code}"
                row["methods"][label] = True
            row.setdefault("actions", {})[profile.code] = _short_action(profile, item["category"])
    table = []
    for row in rows.values():
        actions = row.get("actions", {})
        table.append(
            {
                "category": row["category"],
                "methods": list(row["methods"]),
                "cells": [actions.get(p.code, "not detected") for p, _ in covered],
            }
        )
    return {
        "profiles": [p.code for p, _ in covered],
        "rows": table,
        "gaps": {p.code: coverage["gaps"] for p, coverage in covered},
    }


def redaction_report(
    items: Iterable[Redacted], profile: RetentionProfile | None = None
) -> dict[str, Any]:
    """What redaction did to ``items``: categories, counts (spans and items), and the detectors
    with their versions and methods (the built-in ones always; the French NER and admin
    patterns where ``profile`` has them or where they fired); with ``profile``, also its
    ``coverage`` (``redaction_coverage``: each category's action and method, and the gaps)."""
    from scopeweb.redaction.credentials import DETECT_SECRETS_VERSION
    from scopeweb.redaction.recognizers import (
        METHOD_CUSTOM,
        PRESIDIO_VERSION,
        RULES_VERSION,
        SCORE_THRESHOLD,
        ner_detector,
    )

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
    known = detectors(profile)
    ner = ner_detector()
    if ner.name in by_detector and all(d.name != ner.name for d in known):
        known.append(ner)
    listed = [
        {
            "name": d.name,
            "category": d.category,
            "version": d.version,
            "method": d.method,
            "spans": by_detector[d.name],
        }
        for d in known
    ]
    listed += [
        {
            "name": name,
            "category": category,
            "version": f"admin pattern; presidio-analyzer {PRESIDIO_VERSION}",
            "method": METHOD_CUSTOM,
            "spans": by_detector[name],
        }
        for name, category in sorted(custom.items())
        if all(d.name != name for d in known)
    ]
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "engine": {
            "presidio_analyzer": PRESIDIO_VERSION,
            "detect_secrets": DETECT_SECRETS_VERSION,
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
    if profile is not None:
        report["coverage"] = redaction_coverage(profile)
    return report
