"""PII detection and redaction (Presidio pattern recognizers; no model is downloaded).

Importing this package is cheap: Presidio is imported, and the analyzer built, on first use.
"""

from scopeweb.redaction.services import (
    PiiSpan,
    Redacted,
    pii_find,
    redact_text,
    redact_tokens,
    redaction_report,
)

__all__ = ["PiiSpan", "Redacted", "pii_find", "redact_text", "redact_tokens", "redaction_report"]
