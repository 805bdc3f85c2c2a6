"""Keyed digests of original, PII-bearing texts and files: HMAC-SHA256 under ``HASH_KEY``.

A plain sha256 of an original prompt lets anyone who reads it (an export, the API, a database
dump) confirm a guess: hash "My NHS number is 943 476 5919" and compare. A keyed digest still
lets this server check that a file supplied again is the original (the same text gives the same
digest) while telling nothing to whoever lacks ``settings.HASH_KEY``.

The digest is the HMAC of the sha256 (hex) of the bytes, under a labelled key, so that the
stored plain sha256 of rows written before keyed digests existed could be converted in place
(``traces`` migration 0016) without their originals. Content addressing that never exposes
PII-bearing text (chunk files, model weights, signed PDFs) stays plain sha256.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

_LABEL = b"scopeweb.original-digest.v1\x00"


def keyed_digest(sha256_hex: str) -> str:
    """The keyed digest of data whose plain sha256 (hex) is ``sha256_hex``."""
    key = str(settings.HASH_KEY).encode()
    return hmac.new(key, _LABEL + sha256_hex.encode("ascii"), hashlib.sha256).hexdigest()


def original_digest(data: bytes) -> str:
    """The keyed digest of ``data`` (64 hex characters, like a sha256)."""
    return keyed_digest(hashlib.sha256(data).hexdigest())
