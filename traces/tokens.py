"""Token ids as text: the tokenizer's pieces (``tokenizer_decode``), the text each piece stands
for (``piece_text``) and how the trace strip draws it (``display_pieces``).

Token strings come from the model's tokenizer (the ``tokenizers`` library, never torch),
loaded only when there is something to decode.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

Decode = Callable[[list[int]], list[str]]


def tokenizer_decode(ids: list[int]) -> list[str]:
    # Only the tokenizer, which needs no torch; imported here so the web process loads it only
    # when a reviewer asks for a suggestion.
    from traces.engine.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    return [tokenizer.id_to_token(i) or "" for i in ids]


BOS_PIECE = "<bos>"

_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")

# Whitespace made visible; the strip breaks its line after a newline, as the text does.
VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}

# Token id -> how it reads, per process (the vocabulary has 262,144 pieces; this keeps the
# ones traces use, and starts over past the limit).
_PIECES_LIMIT = 100_000


def piece_text(piece: str) -> str:
    """The text a vocabulary piece stands for: SentencePiece's ``▁`` is a space, and a
    byte-fallback piece (``<0x0A>``) is its byte when that byte is ASCII."""
    return _BYTE.sub(
        lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) < 0x80 else m.group(0),
        piece.replace("▁", " "),
    )


def visible_text(text: str) -> str:
    """``text`` with spaces, newlines and tabs drawn (· ↵ →); empty becomes ∅."""
    return "".join(VISIBLE.get(ch, ch) for ch in text) or "∅"


class Piece(NamedTuple):
    text: str  # what the piece stands for
    shown: str  # ``text`` with whitespace drawn
    is_bos: bool  # the BOS piece


_PIECES: dict[Decode, dict[int, Piece]] = {}  # decode function -> token id -> Piece


def shown_text(text: str, category: str | None) -> str:
    """What the strip draws: whitespace made visible; a redacted span's category on its first
    token and ``…`` on the rest (so each keeps a place in the strip)."""
    if category is not None:
        return text or "…"
    return visible_text(text)


def display_pieces(ids: list[int], decode: Decode | None = None) -> list[Piece]:
    """How each token id reads (``Piece``), by ``decode`` (default: the model's tokenizer).
    Each id is worked out once per process and decode function: a 1000-token trace then costs
    dictionary lookups, not 1,000 tokenizer calls and regular expressions."""
    decode = decode or tokenizer_decode
    known = _PIECES.setdefault(decode, {})
    missing = sorted(set(ids).difference(known))
    if missing:
        if len(known) + len(missing) > _PIECES_LIMIT:
            known.clear()
        known.update(zip(missing, map(_piece, decode(missing)), strict=True))
    return [known[token_id] for token_id in ids]


def _piece(piece: str) -> Piece:
    text = piece_text(piece)
    return Piece(text, visible_text(text), piece == BOS_PIECE)
