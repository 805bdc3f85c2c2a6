"""PII detection and redaction: Presidio pattern recognizers, detect-secrets' plugins for
credentials and, under strong redaction (FR), spaCy's French NER from a pip-installed model;
nothing is downloaded at run time.

Importing this package is cheap: Presidio is imported, and the analyzer built, on first use;
the French model loads on the first text it reads.
"""

from scopeweb.redaction.coverage import (
    redaction_coverage,
    redaction_coverage_table,
    redaction_report,
)
from scopeweb.redaction.services import (
    PiiSpan,
    Redacted,
    pii_find,
    pii_flags,
    redact_text,
    redact_tokens,
)

__all__ = [
    "PiiSpan",
    "Redacted",
    "pii_find",
    "pii_flags",
    "redact_text",
    "redact_tokens",
    "redaction_coverage",
    "redaction_coverage_table",
    "redaction_report",
]
