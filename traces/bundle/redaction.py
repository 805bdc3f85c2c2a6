"""Redaction before storage in a bundle: the ``redacted`` column's category codes, and the
texts a redacted token shows."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

# Redaction category codes (bits 0-6; 0: not redacted). Built-in categories have fixed codes;
# an admin pattern's category gets one from CUSTOM_CODE_BASE on, per run (see the file's table).
REDACTION_CODES = {
    "EMAIL": 1,
    "PHONE": 2,
    "CREDIT_CARD": 3,
    "IBAN": 4,
    "IP_ADDRESS": 5,
    "UK_NHS": 6,
    "UK_NINO": 7,
    "FR_NIR": 8,
    "US_SSN": 9,
    "CREDENTIAL": 10,  # detect-secrets' plugins
    "PERSON": 11,  # French NER (strong redaction)
    "LOCATION": 12,
}
CUSTOM_CODE_BASE = 32
OTHER_CODE = 127  # a category missing from the table (never expected): still redacted
OTHER_CATEGORY = "PII"
REDACTION_RUN_START = 0x80
REDACTION_TABLE_KEY = b"scopeweb.redaction_codes"


def redaction_codes(categories: list[str] | tuple[str, ...] = ()) -> dict[str, int]:
    """Category -> code: the built-in ones, then ``categories`` not among them (sorted)."""
    extra = sorted(set(categories) - set(REDACTION_CODES))
    table = dict(REDACTION_CODES)
    for offset, category in enumerate(extra):
        if CUSTOM_CODE_BASE + offset >= OTHER_CODE:
            break  # more categories than codes: the rest read as OTHER_CATEGORY
        table[category] = CUSTOM_CODE_BASE + offset
    return table


def redaction_code(category: str, codes: dict[str, int], *, first: bool) -> int:
    """The stored ``redacted`` byte of a token of ``category`` (``first``: of its span)."""
    return codes.get(category, OTHER_CODE) | (REDACTION_RUN_START if first else 0)


def redaction_table(files: dict[str, bytes]) -> dict[int, str]:
    """Code -> category of a chunk, from its tokens file (the built-in table when it has none)."""
    meta = pq.ParquetFile(io.BytesIO(files["tokens"])).schema_arrow.metadata or {}
    raw = meta.get(REDACTION_TABLE_KEY)
    table = {code: category for category, code in REDACTION_CODES.items()}
    if raw:
        table |= {int(code): str(category) for code, category in json.loads(raw).items()}
    return table | {OTHER_CODE: OTHER_CATEGORY}


def redacted_texts(codes: list[int], table: dict[int, str]) -> list[str | None]:
    """Per token: None when kept, ``[CATEGORY]`` on the first token of a redacted span (and on
    the first of ``codes`` when it starts inside one), "" on the rest of the span."""
    shown: list[str | None] = []
    previous = 0
    for code in codes:
        if not code:
            shown.append(None)
        elif code & REDACTION_RUN_START or not previous:
            category = table.get(code & ~REDACTION_RUN_START & 0xFF, OTHER_CATEGORY)
            shown.append(f"[{category}]")
        else:
            shown.append("")
        previous = code
    return shown


def redacted_category(code: int, table: dict[int, str]) -> str | None:
    return table.get(code & ~REDACTION_RUN_START & 0xFF, OTHER_CATEGORY) if code else None
