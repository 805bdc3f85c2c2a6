"""Admin-defined patterns of a retention profile: their shape and their validation.

A profile's ``custom_patterns`` is a JSON list of ``{"name", "regex", "category"}``. Regexes are
compiled with the ``regex`` library, the engine Presidio's pattern recognizers match with, so a
pattern that passes here is one that Presidio can run. This module needs neither Presidio nor
Django models, so the model field can use its validator cheaply.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

import regex
from django.core.exceptions import ValidationError

MAX_CUSTOM_PATTERNS = 20
MAX_NAME_LENGTH = 50
MAX_REGEX_LENGTH = 500
CATEGORY_RE = re.compile(r"[A-Z][A-Z0-9_]{0,39}")
_KEYS = {"name", "regex", "category"}


class CustomPattern(TypedDict):
    name: str
    regex: str
    category: str


def custom_pattern_errors(value: Any) -> list[str]:
    """Every problem with ``value`` as a list of patterns, each naming the pattern and field."""
    if not isinstance(value, list):
        return ['Custom patterns must be a JSON list of {"name", "regex", "category"} objects.']
    if len(value) > MAX_CUSTOM_PATTERNS:
        return [f"At most {MAX_CUSTOM_PATTERNS} custom patterns are allowed; got {len(value)}."]
    errors: list[str] = []
    names: set[str] = set()
    for number, item in enumerate(value, start=1):
        where = f"Pattern {number}"
        if not isinstance(item, dict):
            errors.append(f'{where}: must be an object with "name", "regex" and "category".')
            continue
        missing = sorted(_KEYS - set(item))
        extra = sorted(set(item) - _KEYS)
        if missing:
            errors.append(f"{where}: missing {', '.join(missing)}.")
        if extra:
            errors.append(f"{where}: unknown key {', '.join(extra)}.")
        if missing or extra:
            continue
        name, pattern, category = item["name"], item["regex"], item["category"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            errors.append(f"{where}: name must be text of 1 to {MAX_NAME_LENGTH} characters.")
            continue
        where = f'{where} ("{name}")'
        if name in names:
            errors.append(f"{where}: the name is used twice.")
        names.add(name)
        if not isinstance(category, str) or not CATEGORY_RE.fullmatch(category):
            errors.append(
                f"{where}: category {category!r} must be one upper-case word "
                "(A-Z, digits and _, starting with a letter, at most 40 characters)."
            )
        if not isinstance(pattern, str) or not pattern:
            errors.append(f"{where}: regex must be non-empty text.")
            continue
        if len(pattern) > MAX_REGEX_LENGTH:
            errors.append(f"{where}: regex is longer than {MAX_REGEX_LENGTH} characters.")
            continue
        try:
            compiled = regex.compile(pattern)
        except regex.error as exc:
            errors.append(f"{where}: regex {pattern!r} does not compile: {exc}.")
            continue
        if compiled.match("") is not None:
            errors.append(f"{where}: regex {pattern!r} matches the empty string.")
    return errors


def validate_custom_patterns(value: Any) -> None:
    """Model-field validator for ``RetentionProfile.custom_patterns``."""
    errors = custom_pattern_errors(value)
    if errors:
        raise ValidationError(errors)


def custom_patterns_of(value: Any) -> tuple[tuple[str, str, str], ...]:
    """``(name, regex, category)`` of each valid stored pattern; raises on an invalid list,
    since silently skipping a pattern would leave the text it names unredacted."""
    errors = custom_pattern_errors(value or [])
    if errors:
        raise ValueError("Invalid custom patterns: " + " ".join(errors))
    return tuple((item["name"], item["regex"], item["category"]) for item in value or [])
