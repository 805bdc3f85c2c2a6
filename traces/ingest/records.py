"""What an ingestion payload becomes (``IngestRecord``), what a bad one raises (``PayloadError``),
the limits every parser enforces, and the checks of values both parsers share.

A record is one sampled LLM request as a serving stack saw it: its trace and span ids, the chat
turns it received, the text it produced and its token counts. Parsers build records only from
values that passed these checks, so a record always holds storable text (no NUL, no unpaired
surrogate, within the size limits) and lowercase hex ids.

The limits bound the work and memory one request can cost the web process. Each error that a
limit raises names the limit's constant, so a client's developer can find it in these sources.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Literal, NoReturn

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32  # nesting levels of JSON arrays and objects
MAX_RECORDS = 1000  # records per request
MAX_TEXT_CHARS = 200_000  # per message and per completion
MAX_MESSAGES = 200  # per record
MAX_TAGS = 32  # per record
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
MAX_NAME_CHARS = 256  # a service or model name
MAX_TOKEN_COUNT = 2**63 - 1  # a signed 64-bit integer, what a database column holds

ROLES = ("system", "user", "assistant", "tool")
# Other names for those roles: Gemma's chat template says "model", OpenAI's API "developer".
ROLE_ALIASES = {"model": "assistant", "developer": "system"}

BODY = "body"  # the path of errors about the request body as a whole


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Message:
    """One chat turn; ``role`` is one of ``ROLES``."""

    role: str
    content: str


@dataclass(frozen=True)
class IngestRecord:
    """One sampled LLM request, normalised from whichever format carried it.

    ``tags`` (sorted keys) and ``extra`` are read-only mappings; they take no part in the hash.
    ``extra`` holds what only the plain format carries: ``overhead_ms`` (a float) and
    ``features`` (a JSON object or None, verbatim, for the caller to validate), each only when
    the payload gave it.
    """

    trace_id: str  # 32 lowercase hex characters, not all zero
    span_id: str  # 16 lowercase hex characters, or "" when not given
    service: str  # "" when absent
    model: str  # "" when absent
    messages: tuple[Message, ...]  # the input, never empty; a bare prompt is one user turn
    completion: str  # "" when none
    input_tokens: int | None
    output_tokens: int | None
    tags: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    started_at: datetime | None = None  # aware, UTC
    extra: Mapping[str, Any] = field(default_factory=_empty_mapping, hash=False)


@dataclass(frozen=True)
class ParseResult:
    """The records of one request, and how many spans were not LLM calls (OTLP only)."""

    records: tuple[IngestRecord, ...]
    skipped_spans: int = 0


class PayloadError(ValueError):
    """A payload that cannot become records: ``path`` says where, ``reason`` what is wrong.

    The message is meant for the client (an HTTP 400 body): ``"traces[3].input_tokens:
    expected a non-negative integer, got \\"12\\""``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)  # args that rebuild it, so it pickles
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def fail(path: str, expected: str, value: Any) -> NoReturn:
    """Raise the usual type error: what ``path`` should hold, and what it held."""
    raise PayloadError(path, f"expected {expected}, got {describe(value)}")


def describe(value: Any) -> str:
    """A short rendering of a JSON value for an error message (never the whole of a big one)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, str):
        value = value[:41]  # dump no more of a long string than is shown
    rendering = json.dumps(value)
    return rendering if len(rendering) <= 40 else rendering[:40] + "…"


# --- JSON decoding --------------------------------------------------------------------------

# A JSON string, or an unterminated one running to the end of the text. Possessive quantifiers:
# the scan is linear whatever the text, with no backtracking to exploit.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_STEP = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(b, 0) for b in range(256)]


def check_body_size(body: bytes) -> None:
    """Refuse a body over ``MAX_BODY_BYTES``: checked before anything reads it."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(
            BODY, f"is {len(body)} bytes; the limit (MAX_BODY_BYTES) is {MAX_BODY_BYTES}"
        )


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body, after the size, UTF-8, depth and syntax checks."""
    check_body_size(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadError(
            BODY, f"is not UTF-8: the byte at offset {error.start} (0x{body[error.start]:02x})"
        ) from None
    return load_json_text(text, BODY)


def load_json_text(text: str, path: str) -> Any:
    """The JSON value of ``text`` (a body, or an attribute holding JSON), depth and syntax checked.

    Nesting is measured before parsing: ``json.loads`` recurses once per level, and a deep
    enough document would end in RecursionError instead of a PayloadError.
    """
    check_json_depth(text, path)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        reason = f"{error.msg} at line {error.lineno}, column {error.colno}"
        raise PayloadError(path, f"is not valid JSON: {reason}") from None
    except RecursionError:  # only if the scan and the parser ever disagree
        raise depth_error(path) from None
    except ValueError as error:  # NaN or Infinity; an integer of more than 4,300 digits
        raise PayloadError(path, f"is not valid JSON: {error}") from None


def check_json_depth(text: str, path: str) -> None:
    """Refuse JSON text nesting arrays and objects deeper than ``MAX_DEPTH``.

    Brackets inside strings do not count; the scan is linear in the length of the text.
    """
    # Bytes, for speed: str has no translate() that deletes at C speed. surrogatepass, since an
    # attribute's text may hold a lone surrogate that check_text refuses later.
    raw = _JSON_STRING.sub(b"", text.encode("utf-8", "surrogatepass"))
    brackets = raw.translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise depth_error(path)


def depth_error(path: str) -> PayloadError:
    """The error of a value nested deeper than ``MAX_DEPTH``."""
    return PayloadError(
        path, f"nests arrays and objects deeper than the limit (MAX_DEPTH) of {MAX_DEPTH} levels"
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


# --- Values both parsers check ----------------------------------------------------------------

_HEX_ID = {32: re.compile(r"[0-9a-fA-F]{32}"), 16: re.compile(r"[0-9a-fA-F]{16}")}
_BASE64_ID = {32: re.compile(r"[A-Za-z0-9+/_-]{22}(==)?"), 16: re.compile(r"[A-Za-z0-9+/_-]{11}=?")}
_SURROGATE = re.compile(r"[\ud800-\udfff]")
CharLimit = Literal["MAX_TEXT_CHARS", "MAX_NAME_CHARS", "MAX_TAG_KEY_CHARS", "MAX_TAG_VALUE_CHARS"]
_CHAR_LIMITS: dict[CharLimit, int] = {
    "MAX_TEXT_CHARS": MAX_TEXT_CHARS,
    "MAX_NAME_CHARS": MAX_NAME_CHARS,
    "MAX_TAG_KEY_CHARS": MAX_TAG_KEY_CHARS,
    "MAX_TAG_VALUE_CHARS": MAX_TAG_VALUE_CHARS,
}


def check_trace_id(value: Any, path: str) -> str:
    """A trace id: 32 hex characters (any case), not all zero; returned in lowercase."""
    return _hex_id(value, path, 32)


def check_span_id(value: Any, path: str) -> str:
    """A span id: 16 hex characters (any case), not all zero; returned in lowercase."""
    return _hex_id(value, path, 16)


def _hex_id(value: Any, path: str, length: int) -> str:
    if not isinstance(value, str) or not _HEX_ID[length].fullmatch(value):
        expected = f"{length} hex characters"
        if isinstance(value, str) and _BASE64_ID[length].fullmatch(value):
            expected += " (ids are written in hex, not base64)"
        fail(path, expected, value)
    if value.strip("0") == "":
        raise PayloadError(path, "is all zeros, which W3C Trace Context calls invalid")
    return value.lower()


def check_text(value: Any, path: str, limit: CharLimit = "MAX_TEXT_CHARS") -> str:
    """Text a record may hold: a string within the ``limit``, no NUL, no unpaired surrogate."""
    if not isinstance(value, str):
        fail(path, "a string", value)
    most = _CHAR_LIMITS[limit]
    if len(value) > most:
        raise PayloadError(path, f"is {len(value)} characters long; the limit ({limit}) is {most}")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL, and no prompt needs one.
        raise PayloadError(path, f"contains a NUL character (at index {value.index(chr(0))})")
    surrogate = _SURROGATE.search(value)
    if surrogate:
        # An escaped lone surrogate ("\ud800") parses, but cannot be stored as UTF-8.
        raise PayloadError(
            path, f"contains an unpaired surrogate (at index {surrogate.start()}), not Unicode"
        )
    return value


def check_name(value: Any, path: str) -> str:
    """A service or model name: text of at most ``MAX_NAME_CHARS`` characters."""
    return check_text(value, path, "MAX_NAME_CHARS")


def check_role(value: Any, path: str) -> str:
    """A message role, one of ``ROLES`` once ``ROLE_ALIASES`` are resolved."""
    if isinstance(value, str) and value in ROLE_ALIASES:
        return ROLE_ALIASES[value]
    if not isinstance(value, str) or value not in ROLES:
        fail(path, "a role (" + ", ".join(ROLES) + ")", value)
    return value


def check_messages(messages: list[Message], path: str) -> tuple[Message, ...]:
    """The input of a record: at least one message, at most ``MAX_MESSAGES``."""
    if not messages:
        raise PayloadError(path, "holds no messages")
    if len(messages) > MAX_MESSAGES:
        raise PayloadError(
            path, f"holds {len(messages)} messages; the limit (MAX_MESSAGES) is {MAX_MESSAGES}"
        )
    return tuple(messages)


def check_token_count(value: Any, path: str) -> int:
    """A token count: a non-negative integer (a JSON ``true`` is not one) that fits int64."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        fail(path, "a non-negative integer", value)
    return value


def check_duration_ms(value: Any, path: str) -> float:
    """A duration in milliseconds: a finite non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(path, "a non-negative number", value)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any double
        fail(path, "a non-negative number", value)
    if not math.isfinite(number) or number < 0:
        fail(path, "a non-negative number", value)
    return number


def check_tag_key(value: Any, path: str) -> str:
    """A tag's key: non-empty text of at most ``MAX_TAG_KEY_CHARS`` characters."""
    key = check_text(value, path, "MAX_TAG_KEY_CHARS")
    if not key:
        raise PayloadError(path, "is an empty tag key")
    return key


def check_tag_value(value: Any, path: str) -> str:
    """A tag's value: text of at most ``MAX_TAG_VALUE_CHARS`` characters."""
    return check_text(value, path, "MAX_TAG_VALUE_CHARS")


def frozen_tags(tags: Mapping[str, str], path: str) -> Mapping[str, str]:
    """Checked tags as a read-only mapping in key order, at most ``MAX_TAGS`` of them."""
    if len(tags) > MAX_TAGS:
        raise PayloadError(path, f"holds {len(tags)} tags; the limit (MAX_TAGS) is {MAX_TAGS}")
    return MappingProxyType(dict(sorted(tags.items())))


def frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of ``mapping``, for a record's ``extra``."""
    return MappingProxyType(dict(mapping))
